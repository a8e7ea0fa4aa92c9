"""A real S3-protocol server on 127.0.0.1 (moto's), reached by boto3 over HTTP."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Iterator

from moto.server import ThreadedMotoServer

from nst_batch.tasks.output.storage import reset_s3_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Failures(logging.Handler):
    """What the server (it runs in this process) logs with a traceback: an error inside moto, not
    an S3 error answer, which is a normal response and logs nothing."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in ("werkzeug", "moto", "flask"):
            detail = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
            self.seen.append(f"{record.name}: {record.getMessage()}\n{detail}")


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """Start the server, point the standard AWS settings at it, yield its endpoint URL; fails
    afterwards if the server logged an error with a traceback."""
    failures = _Failures()
    logging.getLogger().addHandler(failures)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    reset_s3_client()
    try:
        yield endpoint
    finally:
        server.stop()
        logging.getLogger().removeHandler(failures)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_s3_client()
    assert not failures.seen, (
        f"the S3 server logged {len(failures.seen)} error(s); the last:\n{failures.seen[-1][-3000:]}"
    )
