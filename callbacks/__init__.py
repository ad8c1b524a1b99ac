"""Thin Dash callbacks: read inputs, call core/, hand results to components/."""

# How often the browser polls a background job (dash's default is 1 s): a job answered from the
# cache reaches the page at the first poll, and progress bars move at this rate. A poll of a
# running job costs the server a few ms.
POLL_MS = 250

HIDDEN, SHOWN = {"display": "none"}, {"display": "block"}


def job_options(button: str, cancel: str, progress: str) -> dict:
    """What every button-started background job shares: its button disabled, its Cancel button and
    progress bar shown while it runs; the bar driven by set_progress(done, total, label)."""
    from dash import Input, Output
    return dict(background=True, interval=POLL_MS, prevent_initial_call=True,
                running=[(Output(button, "disabled"), True, False),
                         (Output(cancel, "style"), {"display": "inline-block"}, HIDDEN),
                         (Output(progress, "style"), SHOWN, HIDDEN)],
                progress=[Output(progress, "value"), Output(progress, "max"), Output(progress, "label")],
                cancel=[Input(cancel, "n_clicks")])
