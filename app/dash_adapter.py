"""Every use of Dash's private parts, in one place (app/background.py builds on these).

Checked against the Dash version in TESTED; tests/test_dash_adapter.py fails, naming the assumption,
when an upgrade breaks one. The assumptions:
1. `dash._callback_context.context_value` is the ContextVar holding the callback context
   (`dash.ctx` reads it) as a `dash._utils.AttributeDict`.
2. A background manager's class attribute `functions` lists (key, fn, progress) for every background
   callback; `func_registry` maps the key to the job function `make_job_fn` made; `call_job_fn(key,
   job_fn, args, context)` starts a job and returns its id; dash calls `job_fn(result_key,
   progress_key, args, context)` in the job.
3. A job's result record: the callback's output, `{"_dash_no_update": ...}`, or on an uncaught
   exception `{"background_callback_error": {"msg": str, "tb": str}}`; DiskcacheManager keeps it
   as the value, CeleryManager as a JSON string (PlotlyJSONEncoder) in the result backend;
   `get_result` answers `UNDEFINED` while there is none.
4. `_plotly_utils.utils.PlotlyJSONEncoder` encodes what callbacks return (figures, numpy).
"""
from __future__ import annotations

import json

from _plotly_utils.utils import PlotlyJSONEncoder
from dash._callback_context import context_value
from dash._utils import AttributeDict

TESTED = "4.4.1"
ERROR = "background_callback_error"
NO_UPDATE = "_dash_no_update"


def set_context(values: dict) -> None:
    """Run a callback outside dash's dispatch (in the web process) with this callback context."""
    context_value.set(AttributeDict({**values, "updated_props": {}}))


def registered(manager, background_key: str):
    """(fn, progress) of the background callback registered under `background_key`."""
    return next((f, p) for k, f, p in manager.functions if k == background_key)


def key_of(manager, job_fn) -> str:
    """The background key of a job function dash hands to call_job_fn."""
    return next(k for k, f in manager.func_registry.items() if f is job_fn)


def error_record(message: str) -> dict:
    """A job result that dash shows as the callback's error (no traceback)."""
    return {ERROR: {"msg": message, "tb": ""}}


def error_of(result) -> dict | None:
    """The error part of a job result, if it is one."""
    return result.get(ERROR) if isinstance(result, dict) else None


def as_result(answer):
    """A callback's return value as a job's result decodes (JSON, as the result stores hold it)."""
    return json.loads(to_json(answer))


def to_json(value) -> str:
    return json.dumps(value, cls=PlotlyJSONEncoder)
