"""Real object-storage servers for tests, on 127.0.0.1 only (no mocks, no Docker).

* ``S3Server``: moto's ``ThreadedMotoServer`` (a real HTTP S3 API) in a daemon thread.
* ``GCSServer``: ``gcp-storage-emulator`` (a real HTTP GCS JSON API) in a daemon thread.

Both are context managers (``with S3Server() as s3: ...``) and can also be ``start()``-ed / ``stop()``-ed.
Import of this module is cheap (moto, the emulator, s3fs and gcsfs are imported when used).
"""

from __future__ import annotations

import os
import time

# Must be set before gcsfs is imported, or gcsfs probes every bucket over gRPC and each operation
# against the emulator waits out a 60 s timeout.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import json
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

__all__ = ["S3Server", "GCSServer", "upload_dir", "clear_fs_caches"]

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def clear_fs_caches() -> None:
    """Forget cached fsspec filesystem instances (and with them their listing caches) of s3fs/gcsfs."""
    import fsspec

    for protocol in ("s3", "gcs"):
        try:
            cls = fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError):
            continue
        cls.clear_instance_cache()


def _strip_protocol(url: str) -> str:
    for p in ("s3://", "s3a://", "gs://", "gcs://"):
        if url.startswith(p):
            return url[len(p) :]
    return url


def upload_dir(fs, local_dir, remote_prefix: str) -> list[str]:
    """Upload every file below ``local_dir`` to ``remote_prefix/<relative path>`` with ``fs.put_file``.

    ``remote_prefix`` may carry a protocol (``s3://bucket/x``, ``gs://bucket/x``). Returns the remote
    paths written (with the protocol of ``remote_prefix``), sorted. The filesystem's listing cache is
    invalidated afterwards.
    """
    local_dir = Path(local_dir)
    remote_prefix = remote_prefix.rstrip("/")
    written = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        remote = f"{remote_prefix}/{rel}"
        fs.put_file(str(path), remote)
        written.append(remote)
    fs.invalidate_cache()
    return written


class S3Server:
    """moto S3 server on 127.0.0.1 with an OS-chosen port (``port=0``).

    ``endpoint_url`` is ``http://127.0.0.1:<port>``. All state is in memory and process-global
    (moto's backends), shared with any in-process ``moto.mock_aws``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._server = None

    # -- lifecycle
    def start(self) -> "S3Server":
        import logging

        from moto.server import ThreadedMotoServer

        # werkzeug logs one line per request to stderr; keep test output readable.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        # port=0: the real port is only known from the bound socket (moto 5.2: get_host_and_port()).
        host, port = server.get_host_and_port()
        self._server = server
        self.host, self.port = host, port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- connection details
    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def storage_options(self) -> dict:
        """Keyword arguments for ``s3fs.S3FileSystem`` / ``fsspec.open(..., **options)``."""
        return {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": REGION},
        }

    def env(self) -> dict[str, str]:
        """Environment variables pointing boto3/s3fs/aws-cli at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
        }

    def filesystem(self):
        """A fresh (uncached) ``s3fs.S3FileSystem`` for this server."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options())

    def client(self):
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    # -- buckets
    def make_bucket(self, name: str) -> str:
        """Create bucket ``name``; returns ``"s3://name"``."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def delete_bucket(self, name: str) -> None:
        """Delete every object (and version) of ``name`` and the bucket itself; missing bucket is fine."""
        client = self.client()
        name = _strip_protocol(name).split("/")[0]
        try:
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=name):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
            client.delete_bucket(Bucket=name)
        except client.exceptions.NoSuchBucket:
            pass

    def reset(self) -> None:
        """Drop ALL moto state (every bucket) through moto's ``/moto-api/reset``."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=30).read()


def _make_api_thread(host: str, port: int, storage, threaded: bool = False):
    """An emulator ``APIThread`` serving with a backlog of 1024 (optionally one thread per request)."""
    from functools import partial
    from http import server as http_server

    from gcp_storage_emulator import server as emulator

    base = http_server.ThreadingHTTPServer if threaded else http_server.HTTPServer

    class _HTTPServer(base):
        request_queue_size = 1024
        daemon_threads = True

        def handle_error(self, request, client_address):
            import sys

            # A client that gave up (timeout, closed range read) is not worth a traceback on stderr.
            if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                return
            super().handle_error(request, client_address)

    class _APIThread(emulator.APIThread):
        def run(self):
            self._httpd = _HTTPServer((self._host, self._port), partial(emulator.RequestHandler, self._storage))
            self.is_running.set()
            self._httpd.serve_forever()

    return _APIThread(host, port, storage, daemon=True)


class GCSServer:
    """gcp-storage-emulator on 127.0.0.1 with an OS-chosen port, in-memory storage, in this process.

    The emulator is an ``http.server`` speaking HTTP/1.0 (one connection per request). By default it
    serves one request at a time (as upstream does; its storage is not written with threads in mind);
    ``threaded=True`` serves each request in its own thread. Either way it listens with a backlog
    of 1024 (upstream: 5, which makes concurrent gcsfs reads crawl) and runs in a daemon thread.
    Quirk (upstream emulator): a suffix range ``Range: bytes=-N`` (``cat_file(path, start=-N)``) is
    ignored and the WHOLE object comes back with status 200; ``bytes=A-B`` and ``bytes=A-`` work.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, project: str = "p", threaded: bool = False):
        self.host = host
        self.port = port
        self.project = project
        self.threaded = threaded
        self._server = None

    # -- lifecycle
    def start(self) -> "GCSServer":
        from gcp_storage_emulator.server import create_server

        server = create_server(self.host, self.port, in_memory=True)
        # Replace the emulator's API thread (same handler, same storage) by one whose listening socket
        # has a deep accept backlog and which is a daemon thread. The stock one listens with
        # backlog 5: gcsfs's concurrent requests (cat of many paths, cat_ranges) then overflow it,
        # SYNs get dropped and retried and 64 range reads take ~70 s instead of < 1 s.
        server._api = _make_api_thread(self.host, self.port, server._storage, threaded=self.threaded)
        server.start()  # returns once the HTTPServer is bound
        httpd = server._api._httpd
        self.host, self.port = httpd.server_address[:2]
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "GCSServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- connection details
    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def storage_options(self) -> dict:
        """Keyword arguments for ``gcsfs.GCSFileSystem`` / ``fsspec.open(..., **options)``."""
        return {"endpoint_url": self.endpoint_url, "token": "anon", "project": self.project}

    def env(self) -> dict[str, str]:
        """Environment variables pointing gcsfs / google-cloud-storage at this server."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint_url}

    def filesystem(self):
        """A fresh (uncached) ``gcsfs.GCSFileSystem`` for this server."""
        import gcsfs

        return gcsfs.GCSFileSystem(skip_instance_cache=True, **self.storage_options())

    # -- buckets (plain JSON API calls)
    def _request(self, method: str, path: str, body: dict | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.endpoint_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read()

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name``; returns ``"gs://name"``."""
        self._request("POST", f"/storage/v1/b?project={quote(self.project)}", {"name": name})
        return f"gs://{name}"

    def delete_bucket(self, name: str) -> None:
        """Delete every object of ``name`` and the bucket itself; a missing bucket is fine."""
        name = _strip_protocol(name).split("/")[0]
        try:
            token = None
            while True:
                q = "" if token is None else f"&pageToken={quote(token)}"
                listing = json.loads(self._request("GET", f"/storage/v1/b/{quote(name, safe='')}/o?maxResults=1000{q}"))
                for item in listing.get("items", []):
                    self._request("DELETE", f"/storage/v1/b/{quote(name, safe='')}/o/{quote(item['name'], safe='')}")
                token = listing.get("nextPageToken")
                if not token:
                    break
            self._request("DELETE", f"/storage/v1/b/{quote(name, safe='')}")
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise

    def reset(self) -> None:
        """Drop every bucket and object."""
        self._server.wipe()



class FaultyProxy:
    """A real HTTP reverse proxy in front of a test server that answers an S3 error (default
    ``503 SlowDown``, as S3 does when throttling) to the first ``failures`` requests matching
    ``should_fail(method, headers)``.

    Everything else is forwarded unchanged. ``.endpoint_url``, ``.failed`` (count), ``.requests`` (count),
    ``.log`` (every request's method and path, in order).
    """

    def __init__(self, upstream: str, failures: int = 2, should_fail=None, status: int = 503,
                 code: str = "SlowDown", message: str = "Please reduce your request rate."):
        import http.client
        import http.server
        import threading
        from urllib.parse import urlsplit

        up = urlsplit(upstream)
        proxy = self
        self.failures, self.failed, self.requests = failures, 0, 0
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._should_fail = should_fail or (lambda method, headers: method == "GET" and "Range" in headers)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.requests += 1
                    proxy.log.append((self.command, self.path))
                    fail = proxy.failed < proxy.failures and proxy._should_fail(self.command, self.headers)
                    if fail:
                        proxy.failed += 1
                if fail:
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                               f"<Message>{message}</Message></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"{up.hostname}:{up.port}"
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # A HEAD answer has no body, but its Content-Length is the object's size (s3fs reads it).
                head = self.command == "HEAD"
                self.send_header("Content-Length", resp.getheader("Content-Length", "0") if head else str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FaultyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def published_event(output_url: str, timeout: float = 30.0):
    """The ``warmstart.checkpoint.published`` event of ``output_url``, read back from the Prefect API once the
    client's events worker has sent it (polled: events reach the API asynchronously); None after ``timeout``."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:  # the client asks 100 events by default: the server refuses
            page = client.read_events(filter=EventFilter(event=EventNameFilter(
                name=["warmstart.checkpoint.published"])), limit=50)
        found = [e for e in page.events if e.payload.get("url") == output_url]
        if found:
            return found[0]
        time.sleep(0.2)
    return None
