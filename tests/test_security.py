"""Request limits, the secret key and per-session identity, against a real HTTP server on loopback."""
import base64
import json
import logging
import socket
import threading
import time

import dash
import pytest
from dash import Input, Output, dcc, html
from werkzeug.serving import make_server

from app import security
from app.settings import Settings

CAP_MB = 2


@pytest.fixture(scope="module")
def served():
    """A Dash app with an upload callback, limited as create_app limits it, served by Werkzeug."""
    app = dash.Dash(__name__)
    app.layout = html.Div([dcc.Upload(id="up"), html.Div(id="out")])

    @app.callback(Output("out", "children"), Input("up", "contents"))
    def size(contents):
        return str(len(contents or ""))
    settings = Settings(max_upload_mb=CAP_MB, secret_key="k" * 32)
    security.limit_requests(app.server, settings)
    security.use_secret_key(app.server, settings)
    security.use_sessions(app.server)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, server.server_port
    server.shutdown()


def _payload(contents: str) -> bytes:
    return json.dumps({"output": "out.children", "outputs": {"id": "out", "property": "children"},
                       "inputs": [{"id": "up", "property": "contents", "value": contents}],
                       "changedPropIds": ["up.contents"], "state": []}).encode()


def _post(port, body: bytes | None, length: int | None = None, timeout=10) -> tuple[int, float]:
    """POST to dash's callback route over a raw socket: sends the headers, then `body` (none when
    None) from another thread while this one waits for the status line. (status, seconds until it came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        length = len(body) if length is None else length
        s.sendall(f"POST /_dash-update-component HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {length}\r\n\r\n".encode())
        t = time.monotonic()

        def send():
            try:
                s.sendall(body)
            except OSError:  # refused early: the server stopped reading and closed
                pass
        sender = threading.Thread(target=send, daemon=True)
        if body is not None:
            sender.start()
        status = s.recv(4096).split(b"\r\n", 1)[0]
        seconds = time.monotonic() - t
        try:
            s.shutdown(socket.SHUT_RDWR)  # ends the sender
        except OSError:  # the server has closed it already
            pass
        return int(status.split()[1]), seconds


def _data_url(n_bytes: int) -> str:
    return "data:image/png;base64," + base64.b64encode(b"\x89" * n_bytes).decode()


def test_the_request_cap_follows_the_upload_cap():
    cap = security.request_cap(20 * 2**20)
    assert cap == 4 * -(-20 * 2**20 // 3) + security.REQUEST_MARGIN  # base64 of 20 MiB + 1 MiB
    assert 27 * 2**20 < cap < 28 * 2**20  # 20 MiB * 4 / 3 = 26.7 MiB, + 1 MiB


def test_an_oversize_request_gets_413_before_its_body_is_sent(served):
    _, port = served
    status, seconds = _post(port, None, length=300 * 2**20)  # 300 MB announced, not one byte sent
    assert status == 413 and seconds < 5  # answered from the headers: the body was never waited for


def test_a_60_mb_body_gets_413_and_the_next_request_works(served):
    _, port = served
    status, _ = _post(port, b"x" * (60 * 2**20))
    assert status == 413
    assert _post(port, _payload(_data_url(1000)))[0] == 200


def test_a_file_at_the_upload_cap_still_goes_through(served):
    _, port = served
    assert _post(port, _payload(_data_url(CAP_MB * 2**20)))[0] == 200
    assert _post(port, _payload(_data_url(CAP_MB * 2**20 + 2 * security.REQUEST_MARGIN)))[0] == 413


def test_the_session_id_is_signed_and_cannot_be_forged(served):
    app, _ = served
    client = app.server.test_client()
    client.get("/")
    mine = client.get_cookie("detr_session")
    assert mine is not None and mine.http_only

    def sid_of(cookie_value):
        with app.server.test_request_context(headers={"Cookie": f"detr_session={cookie_value}"}):
            app.server.preprocess_request()
            return security.session_id()
    assert sid_of(mine.value) == sid_of(mine.value)  # the same browser keeps its id
    # someone else's id written into an unsigned (or re-signed with another key) cookie is not taken
    from flask.sessions import SecureCookieSessionInterface
    from flask import Flask
    other = Flask("forger")
    other.secret_key = "not the server's key"
    forged = SecureCookieSessionInterface().get_signing_serializer(other).dumps({"sid": sid_of(mine.value)})
    assert sid_of(forged) != sid_of(mine.value)


def test_the_secret_key_comes_from_settings_and_a_missing_one_is_warned_about(caplog):
    import flask
    server = flask.Flask("x")
    security.use_secret_key(server, Settings(secret_key="from-settings"))
    assert server.secret_key == "from-settings"
    shared = []
    security.use_secret_key(server, Settings(secret_key=None), lambda generate: shared.append(1) or b"kept-in-store")
    assert server.secret_key == b"kept-in-store" and shared == [1]
    security._warned = False
    with caplog.at_level(logging.WARNING, logger="app.security"):
        assert security.warn_without_secret_key(Settings(secret_key=None))
        assert not security.warn_without_secret_key(Settings(secret_key=None))  # once per process
    assert sum("DETR_SECRET_KEY is not set" in r.getMessage() for r in caplog.records) == 1
    security._warned = False
    assert not security.warn_without_secret_key(Settings(secret_key="set"))
