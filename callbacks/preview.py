"""Results on screen as they come: a background job's early results ride on its progress output.

The job stores each early result in the server-side cache and puts its reference on an extra
progress output (a dcc.Store); every progress tick repeats the latest reference, so a browser poll
that misses the tick that brought one still finds it. A clientside callback passes each new
reference on, once, to a second store, and a callback of its own draws from there (a callback
with the job's result among its inputs would wait for the job to end) into a third store; a last
clientside callback puts that drawing on the page unless the job's final result is already in the
browser: a drawing of an early result that comes back after the final one's must not cover it.
Used by the explanation (Integrated Gradients' early maps), Compare (panels, then scores, then the
ranking) and MC-Dropout (histograms as samples arrive).
"""
from __future__ import annotations

import json

from dash import Input, Output, State, html, no_update

from callbacks import job_options
from core import cache

PREVIEW_SECONDS = 3600  # an early result stays in the cache this long: the life of the job it belongs to
# the browser passes each reference on once: a new one only
SHOW_NEW = """function(preview, shown) {
    return (preview && (!shown || preview.preview !== shown.preview)) ? preview : window.dash_clientside.no_update;
}"""
KEEP = {"no_update": True}  # an output the drawing leaves as it is (dash's no_update is not JSON)
# a drawing reaches the page unless the final result (or error) of the same run is already there: a
# reference first seen in the poll that brings a job's end must not cover it; nor one of a run the person
# cancelled: drawn after the cancel, it would cover the note that says so. Requests carry "run" (the
# button's n_clicks): the same for an error answered for that job, new for a retry.
SHOW_UNLESS_FINAL = """function(view, result, cancelled) {
    const keep = window.dash_clientside.no_update, keys = %s, n = %d;
    const same = r => !!r && keys.every(k => JSON.stringify(r[k]) === JSON.stringify(view.request[k]));
    if (!view || same(result) || same(cancelled)) {
        return Array(n).fill(keep);
    }
    return view.outputs.map(v => (v && v.no_update === true && Object.keys(v).length === 1) ? keep : v);
}"""
CANCELLED = "Cancelled: what is shown came before the cancel."


class Job:
    """The job's side. `tick(bar)`: the bar (done, total, label) with the latest early result's
    reference; `publish(value, *key, **facts)`: an early result into the cache (`key` tells it
    from the job's other early results), its reference, {**ref, "preview": cache key, **facts},
    to the page."""

    def __init__(self, set_progress, ref: dict, kind: str):
        self.set_progress, self.ref, self.kind = set_progress, ref, kind
        self.bar, self.preview = (0, 1, "starting"), None

    def tick(self, bar=None) -> None:
        self.bar = bar or self.bar
        self.set_progress((*self.bar, self.preview))

    def progress(self, label):
        """A core progress(done, total) that moves the bar, label(done, total) its text."""
        return lambda done, total: self.tick((done, total, label(done, total)))

    def publish(self, value, *key, **facts) -> None:
        k = cache.key("preview", self.kind, self.ref, *key)
        cache.store().set(k, value, expire=PREVIEW_SECONDS)
        self.preview = {**self.ref, "preview": k, **facts}
        self.tick()


def job_options_with_preview(button: str, cancel: str, progress: str, preview: str) -> dict:
    """callbacks.job_options, with the preview store as one more progress output."""
    options = job_options(button, cancel, progress)
    options["progress"] = [*options["progress"], Output(preview, "data")]
    return options


def early_result(preview, image, result, request: tuple[str, ...]):
    """The cached early result behind a reference; None if there is none, it is of another image,
    or the job's final result or error for the same run (the `request` keys of the reference) is there."""
    if (not preview or not image or preview["image_id"] != image["image_id"]
            or (result and all(result.get(k) == preview.get(k) for k in request))):
        return None
    return cache.store().get(preview["preview"])


def register(app, stores: tuple[str, str, str, str], result: str, request: tuple[str, ...], outputs: list,
             states: list, draw, cancel: str, info: str) -> None:
    """Wires the browser side. stores: (preview, shown, view, cancelled) store ids; each new reference
    in `preview` goes once into `shown`; draw(shown reference, *states) returns the values of
    `outputs` ((component id, property) pairs, which the job's final result draws too) into `view`;
    from there they reach the page unless `result` (the job's output) holds the final result of the
    same `request` (its keys in the reference), or `cancelled` that request. A click on `cancel`
    says so under the job's text in `info` (early results on screen stay, and are not final) and
    puts the latest reference's request into `cancelled`."""
    preview, shown, view, cancelled = stores

    def drawing(reference, *values):
        out = draw(reference, *values)
        if all(v is no_update for v in out):
            return no_update
        return {"request": {k: reference.get(k) for k in request}, "outputs": [KEEP if v is no_update else v
                                                                              for v in out]}
    app.clientside_callback(SHOW_NEW, Output(shown, "data"), Input(preview, "data"), State(shown, "data"))
    app.callback(Output(view, "data"), Input(shown, "data"), *states, prevent_initial_call=True)(drawing)
    app.clientside_callback(SHOW_UNLESS_FINAL % (json.dumps(list(request)), len(outputs)),
                            *[Output(i, prop, allow_duplicate=True) for i, prop in outputs],
                            Input(view, "data"), State(result, "data"), State(cancelled, "data"),
                            prevent_initial_call=True)

    def note_cancel(_clicks, children, latest):
        children = children if isinstance(children, list) else [children] if children else []
        return [*children, html.Div(CANCELLED, className="text-muted")], latest and {k: latest.get(k) for k in request}
    app.callback(Output(info, "children", allow_duplicate=True), Output(cancelled, "data"), Input(cancel, "n_clicks"),
                 State(info, "children"), State(preview, "data"), prevent_initial_call=True)(note_cancel)
