"""Shareable links: the query string carries what a person sees (image content id, threshold, picked
query, method family + variant and its parameters); opening the link restores the view from the
shared cache. No image data travels: the image is found by its content id, or asked for again.

A link's values are validated like any other input (core.params declarations, the registry's
`validate` with the model's bounds): a value out of range gives a message and nothing runs.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from dash import Input, Output, State, no_update
import dash_bootstrap_components as dbc

from components import ids
from core import params as P

# fixed keys; a family's own parameters use their declared names (tests check they never collide)
RESERVED = ("image", "threshold", "query", "method", "variant", "target")
IMAGE_ID = re.compile(r"[0-9a-f]{8,128}")


def encode(state: dict) -> str:
    """The query string ("?image=...&threshold=...") of a view; None values are left out."""
    pairs = [(k, state.get(k)) for k in RESERVED] + sorted((state.get("params") or {}).items())
    return "?" + urlencode([(k, _text(v)) for k, v in pairs if v is not None])


def _text(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else f"{value:g}" if isinstance(
        value, float) else str(value)


def decode(search: str | None) -> dict[str, str]:
    """The query string's fields as text (the last of a repeated field wins)."""
    return dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=True))


def _from_text(param: P.Param, text: str):
    """A URL's text as the declared kind, for the declaration's own check."""
    if text == "":
        return None
    if param.kind == "bool":
        return {"true": True, "false": False}.get(text, text)
    if param.kind == "choice":  # choices may be numbers: match them by their text
        return next((c for c in param.choices if str(c) == text), text)
    return text  # int / float / str: Param.check converts and range-checks


def validate(fields: dict[str, str], families: list[dict], context: dict) -> dict:
    """The view a link asks for, checked: {image_id, threshold, query, family, variant, params,
    target}; raises ParamError (a sentence for the person) for anything unknown or out of range."""
    from core.methods.registry import METHODS
    image_id = fields.get("image", "")
    if not IMAGE_ID.fullmatch(image_id):
        raise P.ParamError("The link's image id is not a valid content id.")
    state = {"image_id": image_id, "threshold": P.THRESHOLD.check(fields.get("threshold")),
             "query": None, "family": None, "variant": None, "params": {}, "target": None}
    if fields.get("query"):
        state["query"] = P.QUERY.check(fields["query"], context)
    family = next((f for f in families if f["family"] == fields.get("method")), None) if fields.get("method") else None
    if fields.get("method") and family is None:
        raise P.ParamError(f"The link's method {fields['method']!r} is not one of this dashboard's methods.")
    unknown = sorted(set(fields) - set(RESERVED) - {p.name for p in (family or {}).get("params", ())})
    if unknown:
        raise P.ParamError(f"Unknown parameter(s) in the link: {', '.join(unknown)}.")
    if family is None:
        return state
    names = [name for name, _, _ in family["methods"]]
    variant = fields.get("variant") or family["default"]
    if variant not in names:
        raise P.ParamError(f"The link's variant {variant!r} is not one of {', '.join(names)}.")
    declared = {p.name: p for p in METHODS[variant].params}
    values = {k: _from_text(declared[k], v) for k, v in fields.items() if k in declared and k != P.TARGET.name}
    if family["target"] and fields.get("target"):
        values[P.TARGET.name] = fields["target"]
    checked = METHODS[variant].validate(values, context)  # ParamError: out of range or forged
    state.update(family=family["family"], variant=variant,
                 params={k: checked[k] for k in values if k != P.TARGET.name},
                 target=checked.get(P.TARGET.name) if family["target"] else None)
    return state


def view_state(image, threshold, picked, family, variant, values: dict, target, families: list[dict]) -> dict:
    """What the page shows now, as a link's state (the explanation card's values for its family)."""
    from callbacks.explain import params_for
    fam = next((f for f in families if f["family"] == family), None)
    state = {"image": (image or {}).get("image_id"), "threshold": threshold, "query": picked}
    if fam is not None:
        state.update(method=family, variant=variant if len(fam["methods"]) > 1 else None,
                     target=target if fam["target"] else None, params=params_for(fam, values, None))
    return state


def _message(text: str, colour: str = "warning"):
    return dbc.Alert(text, color=colour, className="py-2 mb-2")


def register(app, settings) -> None:
    from callbacks.explain import families as all_families
    from core import service
    from core.methods.registry import context
    fams = all_families()
    param_ids = [ids.param_id(f["family"], p.name) for f in fams for p in f["params"]]
    variant_ids = [ids.variant_id(f["family"]) for f in fams if len(f["methods"]) > 1]

    def open_link(search):
        """A link opened: validate it, set the controls, find the image (or ask for it); the picked
        query waits in PENDING_PICK until that image's detections arrive."""
        fields = decode(search)
        if not fields:
            return (no_update,) * (6 + len(variant_ids) + len(param_ids))
        skip = (no_update,) * (5 + len(variant_ids) + len(param_ids))
        try:
            state = validate(fields, fams, context(service.model()))
        except P.ParamError as err:
            return (*skip, _message(f"This link cannot be opened: {err} Nothing was run.", "danger"))
        try:
            picture = service.get_image(state["image_id"])
            image, message = {"image_id": state["image_id"], "width": picture.width, "height": picture.height,
                              "name": "shared image", "truth": None}, ""
        except KeyError:
            image, message = no_update, _message(
                "The image of this link is no longer on the server. Upload it again: the same view (threshold, "
                "detection, method and its settings) will appear.")
        family = state["family"]
        variants = [state["variant"] if family and v == ids.variant_id(family) else no_update for v in variant_ids]
        values = [state["params"].get(pid[len(family) + 1:], no_update) if family and pid.startswith(family + "-")
                  else no_update for pid in param_ids]
        return (image, state["threshold"], family or no_update, state["target"] or no_update,
                {"image_id": state["image_id"], "query": state["query"], "family": family}, *variants, *values,
                message)
    app.callback(Output(ids.IMAGE_STORE, "data", allow_duplicate=True), Output(ids.THRESHOLD, "value"),
                 Output(ids.METHOD, "value"), Output(ids.TARGET, "value"),
                 Output(ids.PENDING_PICK, "data", allow_duplicate=True),
                 *[Output(i, "value") for i in variant_ids + param_ids], Output(ids.LINK_MESSAGE, "children"),
                 Input(ids.LOCATION, "search"), prevent_initial_call="initial_duplicate")(open_link)

    def explain_pending(picked, pending, image, family, clicks):
        """The link's detection is picked: press Explain for a method that does not run on picking
        (a cached result comes back at the first poll), and forget the pending state."""
        if not pending or not image or pending["image_id"] != image["image_id"] or picked != pending["query"]:
            return no_update, no_update
        fam = next((f for f in fams if f["family"] == family), None)
        run = fam is not None and pending.get("family") == family and not fam["quick"]
        return ((clicks or 0) + 1 if run else no_update), None
    app.callback(Output(ids.EXPLAIN, "n_clicks"), Output(ids.PENDING_PICK, "data", allow_duplicate=True),
                 Input(ids.PICKER, "value"), State(ids.PENDING_PICK, "data"), State(ids.IMAGE_STORE, "data"),
                 State(ids.METHOD, "value"), State(ids.EXPLAIN, "n_clicks"), prevent_initial_call=True)(explain_pending)

    def link_text(image, threshold, picked, family, target, href, *rest):
        variants = dict(zip(variant_ids, rest[:len(variant_ids)]))
        values = dict(zip(param_ids, rest[len(variant_ids):]))
        if not image:
            return "", "Pick or upload an image first: the link names it."
        state = view_state(image, threshold, picked, family, variants.get(ids.variant_id(family or "")), values,
                           target, fams)
        return (href or "").split("?")[0] + encode(state), ""
    app.callback(Output(ids.LINK_TEXT, "value"), Output(ids.LINK_TEXT, "placeholder"),
                 Input(ids.IMAGE_STORE, "data"), Input(ids.THRESHOLD, "value"), Input(ids.PICKER, "value"),
                 Input(ids.METHOD, "value"), Input(ids.TARGET, "value"), State(ids.LOCATION, "href"),
                 *[Input(i, "value") for i in variant_ids + param_ids])(link_text)

    # copy in the browser: the Clipboard API where the page is a secure context, else the selected
    # text field's copy command (plain http on a shared server has no Clipboard API)
    app.clientside_callback(
        """function (n, text) {
            const field = document.getElementById('%s');
            if (!n || !text) { return window.dash_clientside.no_update; }
            field.select();
            if (navigator.clipboard && window.isSecureContext) {
                return navigator.clipboard.writeText(text).then(() => 'Link copied.', () =>
                    document.execCommand('copy') ? 'Link copied.' : 'Select the link and copy it (Ctrl+C).');
            }
            return document.execCommand('copy') ? 'Link copied.' : 'Select the link and copy it (Ctrl+C).';
        }""" % ids.LINK_TEXT,
        Output(ids.LINK_COPIED, "children"), Input(ids.LINK_COPY, "n_clicks"), State(ids.LINK_TEXT, "value"),
        prevent_initial_call=True)
