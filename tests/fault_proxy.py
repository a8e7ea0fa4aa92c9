"""An HTTP proxy on 127.0.0.1 in front of the S3 server that injects faults: throttling and 5xx
answers for the first N requests, access denied under a prefix, or no answer at all."""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.s3_server import free_port

_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"""


@dataclass
class Faults:
    fail_first: int = 0  # answer this many requests with `status`/`code` before forwarding
    status: int = 503
    code: str = "SlowDown"
    deny_prefix: str | None = None  # "bucket/key-prefix": 403 AccessDenied for matching paths
    down: bool = False  # close connections without answering (the server is gone)
    down_when_key: str | None = None  # go down right after forwarding a PUT of a key containing this
    seen: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        with self._lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                return True
            return False


@contextlib.contextmanager
def fault_proxy(upstream: str, faults: Faults) -> Iterator[str]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return None

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            faults.seen.append(f"{self.command} {self.path}")
            if faults.down:
                self.close_connection = True
                self.connection.close()
                return
            if faults.deny_prefix and self.path.lstrip("/").startswith(faults.deny_prefix):
                return self._error(403, "AccessDenied", "Access Denied")
            if faults.take():
                return self._error(faults.status, faults.code, "injected fault")
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            headers["Host"] = target.netloc
            conn.request(self.command, self.path, body=body or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()
            if faults.down_when_key and self.command == "PUT" and faults.down_when_key in self.path:
                faults.down = True

        def _error(self, status: int, code: str, message: str) -> None:
            data = _ERROR.format(code=code, message=message).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
