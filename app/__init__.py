"""The Dash app: create_app(settings) -> dash.Dash."""
from __future__ import annotations

from pathlib import Path

import dash

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# Dash's own page, with the page's language declared (screen readers pick their voice from it)
INDEX = """<!DOCTYPE html>
<html lang="en">
    <head>
        {%metas%}
        <title>{%title%}</title>
        {%favicon%}
        {%css%}
    </head>
    <body>
        {%app_entry%}
        <footer>
            {%config%}
            {%scripts%}
            {%renderer%}
        </footer>
    </body>
</html>"""


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
    settings.apply()  # core's store and model; forked job processes inherit them
    from app import logs, security
    from app.background import make_manager
    logs.setup(settings.log_level)
    from callbacks import detection, register_all
    from callbacks.evaluate import shown_params
    from callbacks.explain import control_options, families
    from components.evaluate import evaluate_panel
    from core import service
    from core.methods.registry import METHODS
    from components.compare import compare_panel
    from components.explain import explain_controls, explain_panel
    from components.layout import page
    from components.links import link_bar, location
    from components.uncertainty import GUIDE as UNCERTAINTY_GUIDE, uncertainty_controls, uncertainty_panel
    from core.evaluation.compare import NORMALISATIONS
    from core.params import TARGET, UNCERTAINTY

    info = {**model_info(), "max_upload_bytes": settings.max_upload_bytes}
    samples = detection.sample_list(info["is_demo"])
    manager = make_manager(settings)
    app = dash.Dash(__name__, title="DETR Interpretability Dashboard", assets_folder=str(ROOT / "assets"),
                    background_callback_manager=manager,
                    suppress_callback_exceptions=False, index_string=INDEX)
    security.limit_requests(app.server, settings)
    security.use_secret_key(app.server, settings, manager.get_or_create_signing_secret)
    security.use_sessions(app.server)
    if settings.redis_url:  # Celery workers: several processes
        security.warn_without_secret_key(settings)
    loaded, fams = service.model(), families(service.model())
    controls = [explain_controls(families(), TARGET, control_options(info), {f["family"] for f in fams}),
                uncertainty_controls(info["trained_dropout"], UNCERTAINTY)]
    evaluate = evaluate_panel([Path(d).name for d in settings.datasets], shown_params(),
                              [(n, m.label) for n, m in METHODS.items() if m.reason(loaded) is None],
                              [fams[0]["default"], "ig"])
    app.layout = lambda: page(info, samples, controls=controls,
                              panels=[explain_panel(), uncertainty_panel(), compare_panel(NORMALISATIONS)],
                              extra_choices=UNCERTAINTY_GUIDE, evaluate=evaluate, top=[link_bar()],
                              stores=[location()])
    register_all(app, settings)
    return app
