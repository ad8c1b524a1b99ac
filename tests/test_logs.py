"""Failures are logged with a traceback and an error id; the person gets a sentence with the id."""
import logging

from app import logs
from core.errors import failure
from core.params import ParamError


def _raised(err):
    try:
        raise err
    except Exception as caught:  # noqa: BLE001
        return caught


def test_an_unexpected_error_gives_the_person_only_an_id(caplog):
    err = _raised(RuntimeError("CUDA error at /opt/model/secret_path.py:42"))
    with caplog.at_level(logging.ERROR, logger="detr"):
        error_id, sentence = failure(err, "The explanation")
    assert len(error_id) == 8 and f"error id {error_id}" in sentence
    assert "secret_path" not in sentence and "RuntimeError" not in sentence and "Traceback" not in sentence
    (record,) = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert record.levelno == logging.ERROR and record.exc_info[1] is err
    assert "secret_path.py" in caplog.text and "Traceback" in caplog.text  # the operator gets it all


def test_a_message_written_for_the_person_is_kept(caplog):
    err = _raised(ParamError("IG steps must be 1..1024 or auto; got 1000000."))
    with caplog.at_level(logging.WARNING, logger="detr"):
        error_id, sentence = failure(err, "The explanation")
    assert sentence == f"The explanation failed: IG steps must be 1..1024 or auto; got 1000000 (error id {error_id})."
    assert any(getattr(r, "error_id", None) == error_id and r.levelno == logging.WARNING for r in caplog.records)


def test_ids_differ_between_failures():
    err = _raised(ValueError("x"))
    assert failure(err, "A")[0] != failure(err, "A")[0]


def _in_a_new_process(code: str) -> str:
    """Logging set up from scratch (pytest's own capture handlers sit on this process' root logger)."""
    import subprocess
    import sys
    from pathlib import Path
    return subprocess.run([sys.executable, "-c", "import logging; from app import logs\n" + code], check=True,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=60).stderr


def test_setup_once_with_the_level_asked():
    err = _in_a_new_process("logs.setup('warning'); logs.setup('warning'); root = logging.getLogger()\n"
                            "assert root.level == logging.WARNING and len(root.handlers) == 1, root.handlers\n"
                            "logging.getLogger('detr').info('hidden'); logging.getLogger('detr').warning('shown')")
    assert "shown" in err and "hidden" not in err and "WARNING" in err


def test_under_gunicorn_its_handlers_are_used():
    err = _in_a_new_process("g = logging.getLogger('gunicorn.error'); h = logging.StreamHandler()\n"
                            "h.setFormatter(logging.Formatter('GUNICORN %(message)s')); g.addHandler(h)\n"
                            "logs.setup('DEBUG'); assert logging.getLogger().handlers == [h]\n"
                            "logging.getLogger('detr').debug('from the app')")
    assert err.strip() == "GUNICORN from the app"
