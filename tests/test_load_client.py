"""bench.load's Dash client against a live `python -m app serve`: the serving figures in the README
come from it, and once it silently failed every session (it called a clientside callback's output
on the server), so one real session must get through without an error."""
import pytest

from bench import load


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    stack = load.Stack("single", "demo", tmp_path_factory.mktemp("load"))
    try:
        stack.wait_ready(180)
        yield stack
    finally:
        stack.stop()


def test_a_session_runs_every_step_without_an_error(server):
    result = load.session(server.url, seed=1_000_100)
    assert result["errors"] == []
    assert set(result["steps"]) == {"upload", "detect", "gradcam", "figure"}
    assert all(wall >= server_s > 0 for wall, server_s in result["steps"].values())


def test_the_client_only_calls_server_callbacks(server):
    client = load.DashClient(server.url)
    assert client.callbacks and not any(cb.get("clientside_function") for cb in client.callbacks.values())
    # the heatmap figure has a server callback and a clientside one; the client picks the server's
    assert any(o.lstrip(".").startswith("explain-figure.figure") for o in client.callbacks)
