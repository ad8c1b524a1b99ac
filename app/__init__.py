"""The Dash app: create_app(settings) -> dash.Dash."""
from __future__ import annotations

from pathlib import Path

import dash

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def model_info() -> dict:
    """What the page says about the served model (loads it in this process; runs nothing)."""
    from core import service
    from core.methods.gradcam import default_layer, layer_choices
    loaded = service.model()
    return {"name": loaded.name, "is_demo": loaded.is_demo, "fallback_reason": loaded.fallback_reason,
            "labels": sorted(loaded.id2label.values()), "trained_dropout": float(loaded.model.config.dropout),
            "layers": layer_choices(loaded.model), "default_layer": default_layer(loaded.model)}


def create_app(settings: Settings | None = None) -> dash.Dash:
    settings = settings or Settings()
    settings.export()
    from app.background import make_manager
    from callbacks import compare, detection, explain, uncertainty  # noqa: F401 - registers the callbacks
    from components.uncertainty import GUIDE as UNCERTAINTY_GUIDE, uncertainty_controls, uncertainty_panel
    from components.compare import compare_panel
    from core.evaluation.compare import NORMALISATIONS
    from components.explain import explain_controls, explain_panel
    from components.layout import page
    from core.methods.baselines import BASELINES

    info = model_info()
    samples = detection.sample_list(info["is_demo"])
    app = dash.Dash(__name__, title="DETR Interpretability Dashboard", assets_folder=str(ROOT / "assets"),
                    external_stylesheets=[BOOTSTRAP_URL], background_callback_manager=make_manager(
                        settings.redis_url), suppress_callback_exceptions=False)
    controls = [explain_controls(info["layers"], info["default_layer"], BASELINES),
                uncertainty_controls(info["trained_dropout"])]
    app.layout = lambda: page(info, samples, controls=controls,
                              panels=[explain_panel(), uncertainty_panel(), compare_panel(NORMALISATIONS)],
                              extra_choices=UNCERTAINTY_GUIDE)
    _give_callbacks(app)
    _serve_bootstrap(app.server)
    return app


_CALLBACK_MAP: dict = {}
_CALLBACK_LIST: list = []


def _give_callbacks(app: dash.Dash) -> None:
    """Every `@callback` of callbacks/, for this app. dash moves those registrations into the first
    app that serves a request (and its setup pops keys out of them), while the modules register
    only once per process: without this, a second app in a process (each browser test makes one)
    has no callbacks at all."""
    from dash import _callback
    _CALLBACK_MAP.update(_callback.GLOBAL_CALLBACK_MAP)
    _CALLBACK_LIST.extend(_callback.GLOBAL_CALLBACK_LIST)
    _callback.GLOBAL_CALLBACK_MAP.clear()
    _callback.GLOBAL_CALLBACK_LIST.clear()
    app.callback_map.update({k: {**v, "background": dict(v["background"])} if v.get("background") else dict(v)
                             for k, v in _CALLBACK_MAP.items()})
    app._callback_list.extend(dict(c) for c in _CALLBACK_LIST)


BOOTSTRAP_URL = "/vendor/bootstrap.min.css"


def _serve_bootstrap(server) -> None:
    """Bootstrap's CSS from the installed bootstrap-flask wheel: the page needs no CDN (works offline)."""
    import flask_bootstrap
    from flask import send_from_directory
    css_dir = Path(flask_bootstrap.__file__).parent / "static" / "bootstrap5" / "css"
    server.add_url_rule(BOOTSTRAP_URL, "bootstrap_css",
                        lambda: send_from_directory(css_dir, "bootstrap.min.css", max_age=86400))
