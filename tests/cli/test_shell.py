"""The CLI's shell around the commands: ``python -m nst_batch.cli`` (__main__), errors to exit
codes (errors, main), the Prefect session's signals and defaults (session) and the temporary
server (server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from nst_batch.cli import commands
from nst_batch.cli.errors import BadInput, CliError, ServerError
from nst_batch.cli.main import main
from nst_batch.cli.server import TemporaryServer
from nst_batch.cli.session import quiet_prefect_defaults, stop_soon_after_ctrl_c


def test_python_dash_m_runs_the_nst_command():
    done = subprocess.run(
        [sys.executable, "-m", "nst_batch.cli", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert all(word in done.stdout for word in ("stylize", "validate", "run", "gallery", "runs"))


@pytest.mark.parametrize(
    ("error", "code", "said"),
    [(BadInput("no such photo"), 2, "nst: error: no such photo"), (ServerError("it died"), 1, "nst: failed: it died")],
)
def test_each_cli_error_is_one_line_and_its_exit_code(monkeypatch, capsys, tmp_path, error, code, said):
    assert issubclass(type(error), CliError)

    def raising(args: object) -> int:
        raise error

    monkeypatch.setitem(commands.COMMANDS, "gallery", raising)
    assert main(["gallery", str(tmp_path)]) == code
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_session_puts_back_every_signal_handler_it_replaced():
    from prefect.utilities import engine

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    prefects = engine._prefect_sigterm_handler
    with stop_soon_after_ctrl_c():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        assert engine._prefect_sigterm_handler is not prefects
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert engine._prefect_sigterm_handler is prefects


def test_quiet_defaults_leave_a_users_own_settings(monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")
    quiet_prefect_defaults()
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"


def test_a_temporary_server_that_dies_while_starting_is_a_server_error():
    server = TemporaryServer()
    server.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(ServerError, match="exited with code 3 while starting"):
        server.wait(timeout_s=30)


def test_the_temporary_server_answers_and_stops_and_logs_no_traceback(capfd):
    """The server inherits this process's stdout and stderr (capfd reads them at the descriptor),
    so whatever it logs while it starts, answers and stops is read here."""
    import urllib.request

    from tests.logs import assert_no_traceback

    server = TemporaryServer().start()
    try:
        server.wait()
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None
    captured = capfd.readouterr()
    assert_no_traceback(captured.out + captured.err, "the temporary Prefect server")
