"""The assumptions app/dash_adapter.py makes about Dash's private parts, checked on the installed Dash.

A failure here names the assumption that broke: re-check app/dash_adapter.py (and app/background.py,
which builds on it) against the new Dash before raising TESTED.
"""
import inspect
import json
from contextvars import ContextVar, copy_context
from importlib.metadata import version

import numpy as np
import plotly.graph_objects as go

from app import dash_adapter as adapter


def test_the_installed_dash_is_the_one_the_adapter_was_checked_against():
    assert version("dash") == adapter.TESTED, (
        f"app/dash_adapter.py was checked against dash {adapter.TESTED}, installed is {version('dash')}: re-check "
        "its assumptions (its docstring, this file) and then update TESTED")


def test_1_the_callback_context_is_a_contextvar_read_by_dash_ctx():
    from dash import ctx
    assert isinstance(adapter.context_value, ContextVar), "1: dash._callback_context.context_value is no ContextVar"

    def run():
        adapter.set_context({"triggered_inputs": [{"prop_id": "b.n_clicks", "value": 1}]})
        return ctx.triggered_id
    assert copy_context().run(run) == "b", "1: dash.ctx does not read context_value any more"


def test_2_managers_list_functions_and_call_jobs_as_assumed():
    from dash import DiskcacheManager
    from dash.background_callback.managers import BaseBackgroundCallbackManager as Base
    assert isinstance(Base.functions, list), "2: BaseBackgroundCallbackManager.functions is gone"
    source = inspect.getsource(Base.register_func)
    assert "functions.append" in source and "(\n                key,\n                fn,\n                progress," in source \
        or "(key, fn, progress)" in source, "2: functions no longer holds (key, fn, progress)"
    assert list(inspect.signature(Base.call_job_fn).parameters) == ["self", "key", "job_fn", "args", "context"], \
        "2: call_job_fn(key, job_fn, args, context) changed"
    assert "func_registry" in inspect.getsource(Base.register), "2: func_registry is no longer filled by register"
    job_fn = DiskcacheManager.make_job_fn(type("M", (), {"handle": {}})(), lambda x: x, None)
    assert list(inspect.signature(job_fn).parameters) == ["result_key", "progress_key", "user_callback_args",
                                                          "context"], "2: the job function's signature changed"


def test_3_a_failed_job_writes_the_error_record_assumed():
    from dash.background_callback.managers.diskcache_manager import _make_job_fn

    class Store(dict):
        def set(self, k, v):
            self[k] = v

    def boom():
        raise ValueError("broken")
    store = Store()
    _make_job_fn(boom, store, None)("r", "p", [], {})
    error = adapter.error_of(store["r"])
    assert error is not None and error["msg"] == "broken" and "Traceback" in error["tb"], \
        "3: an uncaught exception no longer gives {background_callback_error: {msg, tb}}"
    from dash.background_callback.managers.celery_manager import CeleryManager
    assert "json.loads(result)" in inspect.getsource(CeleryManager.get_result), \
        "3: CeleryManager no longer keeps results as JSON strings"


def test_4_plotly_encoder_handles_what_callbacks_return():
    out = adapter.as_result({"fig": go.Figure(go.Scatter(y=[1, 2])), "a": np.arange(3)})
    assert out["a"] == [0, 1, 2] and out["fig"]["data"][0]["y"] == [1, 2], "4: PlotlyJSONEncoder changed"
    assert json.loads(adapter.to_json(adapter.error_record("m"))) == {"background_callback_error": {"msg": "m", "tb": ""}}
