"""`runjob serve [--bind 127.0.0.1:8080]`: the report, refreshing live, and /api/runs as JSON.

The stdlib's ThreadingHTTPServer is enough here and adds no dependency: two read-only GET
routes, rendered from the history on each request, for a few people on localhost. It serves
no files (so none of http.server's path handling is used), answers nothing but GET and HEAD,
and on a loopback address it answers only requests whose Host is a loopback name, so a web
page elsewhere cannot read it through DNS rebinding. Bind another address only behind
something that authenticates: the page shows job names, run ids and stderr tails.
"""

from __future__ import annotations

import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from runjob.errors import RunjobError, UsageError
from runjob.registry import config, loader
from runjob.views import report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
API_LIMIT = 10000


def parse_bind(bind: str) -> tuple[str, int]:
    """HOST:PORT ([::1]:8080 for IPv6) as (host, port); a usage error otherwise."""
    host, sep, port = bind.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f'--bind "{bind}": expected HOST:PORT, e.g. 127.0.0.1:8080')
    return host, int(port)


def api_runs(registry: config.Registry, query: dict[str, list[str]]) -> dict[str, Any]:
    job = _one(query, "job")
    if job is not None:
        registry.job(job)
    limit = _one(query, "limit") or str(API_LIMIT)
    if not limit.isdigit():
        raise UsageError(f'limit "{limit}" is not a number')
    import time

    now = time.time()
    runs = report.load(registry.state_dir, job, report.since_seconds(_one(query, "since") or report.DEFAULT_SINCE), now)
    return {"runs": runs[::-1][: int(limit)], "generated_at": now}


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


class Handler(BaseHTTPRequestHandler):
    server_version = "runjob"
    config_path: str | None = None
    loopback_only = True

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        if self.loopback_only and not _loopback_host(self.headers.get("Host", "")):
            return self._send(421, "text/plain", b"runjob serve answers localhost names only\n", body)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            registry = loader.load(self.config_path)
            if url.path == "/":
                since = _one(query, "since") or report.DEFAULT_SINCE
                html = report.page(registry, _one(query, "job"), since, live=True)
                return self._send(200, "text/html; charset=utf-8", html.encode(), body)
            if url.path == "/api/runs":
                data = json.dumps(api_runs(registry, query), ensure_ascii=False).encode()
                return self._send(200, "application/json", data, body)
        except RunjobError as e:
            code = 400 if isinstance(e, UsageError) else 500
            return self._send(code, "text/plain; charset=utf-8", f"runjob: {e}\n".encode(), body)
        self._send(404, "text/plain", b"not found: / and /api/runs are served\n", body)

    def _send(self, code: int, kind: str, data: bytes, body: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"runjob serve: {self.address_string()} {format % args}\n")


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in LOOPBACK


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve(config_path: str | None, bind: str) -> int:
    host, port = parse_bind(bind)
    loader.load(config_path)  # a broken registry stops here, not on the first request
    Handler.config_path = config_path
    Handler.loopback_only = host in LOOPBACK
    server_class = _V6Server if ":" in host else ThreadingHTTPServer
    try:
        server = server_class((host, port), Handler)
    except OSError as e:
        raise UsageError(f"--bind {bind}: {e.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"runjob: serving http://{shown}:{server.server_address[1]}/ (read-only; Ctrl-C stops)\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
