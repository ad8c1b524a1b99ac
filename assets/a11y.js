/* Accessible names that dash-core-components 4.4 leaves out, filled in from each control's own
 * visible label (components/controls.py with_tooltip: a label inside the "<id>-group" div):
 *  - dcc.Slider / dcc.RangeSlider: the thumb (role=slider) has no name (axe: aria-input-field-name);
 *  - dcc.Dropdown: a focusable, aria-hidden input that hands Tab focus to the dropdown's button
 *    (axe: aria-hidden-focus): it is named and no longer hidden; its clear "button" is an <a>
 *    without href carrying aria-label (axe: aria-allowed-attr): it gets role=button;
 *  - dcc.Upload: its file input has no label (axe: label);
 *  - dbc.Progress (dash-bootstrap-components): its role=progressbar bar has no name
 *    (axe: aria-progressbar-name): it takes its card's header;
 *  - dbc.Tabs: each tab's aria-controls names a panel id that is never rendered (axe:
 *    aria-valid-attr-value): dropped; without tab_id-derived keys every tab link gets the same
 *    generated id (axe: duplicate-id-active) and tabindex=-1 (Tab never reaches them): each gets
 *    its own id and a place in the Tab order;
 *  - dcc.Checklist: its role=listbox has no name: its label's.
 * Attributes only; a MutationObserver re-applies them when React renders the components again. */
(function () {
    function labelOf(el) {
        const group = el.closest('[id$="-group"]');
        const label = group && group.querySelector('label');
        return label ? label.textContent.trim() : null;
    }
    function name(el) {
        if (!el.getAttribute('aria-label')) {
            const text = labelOf(el);
            if (text) { el.setAttribute('aria-label', text); }
        }
    }
    function patch(root) {
        root.querySelectorAll('[role="slider"]:not([aria-label])').forEach(name);
        root.querySelectorAll('input.dash-dropdown-focus-target[aria-hidden]').forEach(function (el) {
            el.removeAttribute('aria-hidden');
            name(el);
        });
        root.querySelectorAll('a.dash-dropdown-clear:not([role])').forEach(function (el) {
            el.setAttribute('role', 'button');
        });
        root.querySelectorAll('input[type="file"]:not([aria-label])').forEach(name);
        root.querySelectorAll('[role="tab"][id$="-tab-null"]').forEach(function (el, k) {
            el.id = el.id.replace(/null$/, String(k));
            el.setAttribute('tabindex', '0');
        });
        root.querySelectorAll('[role="tab"][aria-controls]').forEach(function (el) {
            if (!document.getElementById(el.getAttribute('aria-controls'))) { el.removeAttribute('aria-controls'); }
        });
        root.querySelectorAll('[role="listbox"]:not([aria-label])').forEach(name);
        root.querySelectorAll('[role="progressbar"]:not([aria-label])').forEach(function (el) {
            const header = el.closest('.card') && el.closest('.card').querySelector('.card-header');
            el.setAttribute('aria-label', 'Progress: ' + (header ? header.textContent.trim() : 'running'));
        });
    }
    let queued = false;
    new MutationObserver(function () {
        if (!queued) {
            queued = true;
            requestAnimationFrame(function () { queued = false; patch(document); });
        }
    }).observe(document.documentElement, {childList: true, subtree: true, attributes: true,
                                          attributeFilter: ['aria-hidden', 'role', 'aria-controls', 'id']});
})();
