"""A counting HTTP reverse proxy for measuring what a client asks of an S3 server.

``CountingProxy(upstream_host, upstream_port)`` listens on 127.0.0.1 (an OS-chosen port) and forwards
every request unchanged (method, path, headers including ``Host``, body) to the upstream server over
HTTP/1.1, then returns the upstream's response. It records each request: method, path, ``Range``
header, status and response-body bytes. Counting at the HTTP layer between client and server is
independent of the client library and of the server's own bookkeeping.

Responses are buffered whole (ranged GETs of at most a few MiB here); the proxy runs in the driver
process, never in the measured one.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class CountingProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self.log: list[dict] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- counters
    def reset(self) -> None:
        with self._lock:
            self.log = []

    def snapshot(self) -> dict:
        with self._lock:
            log = list(self.log)
        by_method: dict[str, int] = {}
        for r in log:
            by_method[r["method"]] = by_method.get(r["method"], 0) + 1
        return {
            "requests": len(log),
            "by_method": by_method,
            "ranged_gets": sum(1 for r in log if r["method"] == "GET" and r["range"]),
            "body_bytes": sum(r["bytes"] for r in log),
            "get_body_bytes": sum(r["bytes"] for r in log if r["method"] == "GET"),
            "log": log,
        }

    def _record(self, entry: dict) -> None:
        with self._lock:
            self.log.append(entry)

    # -- lifecycle
    @property
    def endpoint_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "CountingProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _upstream(self) -> http.client.HTTPConnection:
                conn = getattr(self, "_conn", None)
                if conn is None:
                    conn = self._conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                return conn

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length", 0) or 0)
                return self.rfile.read(n) if n else None

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                for attempt in (0, 1):
                    conn = self._upstream()
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                        break
                    except (http.client.HTTPException, ConnectionError):
                        conn.close()
                        self._conn = None
                        if attempt:
                            raise
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() in _HOP_BY_HOP or (k.lower() == "content-length" and self.command != "HEAD"):
                        continue
                    self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD" and data:
                    self.wfile.write(data)
                proxy._record({"method": self.command, "path": self.path, "range": self.headers.get("Range"),
                               "status": resp.status, "bytes": len(data)})

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
