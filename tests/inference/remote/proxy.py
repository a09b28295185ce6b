"""A fault-injecting HTTP proxy on 127.0.0.1, in front of a real model server: it
forwards each request, or answers some itself (429, 503, 401, with headers such as
`Retry-After`), or, after the server is gone, closes the connection without an answer, as
a load balancer does."""
import http.client
import http.server
import json
import threading
import time
from typing import Callable, List, Optional


class FaultProxy:
    """fault(n, method, path) -> an HTTP status to answer the n-th request (1-based, every
    request counted) with instead of forwarding it, or (status, headers), or None; it may
    also act, e.g. kill the server. token: when set, requests without `Authorization:
    Bearer <token>` get 401. `seen` lists (method, path, the status answered, the
    Authorization header) per request, `times` when each came (time.monotonic()) and
    `bodies` what each held. body_fault(method, body) -> a status, or None: the same for
    requests by what they hold (asked first).
    """

    def __init__(self, upstream_port: int,
                 fault: Optional[Callable[[int, str, str], Optional[int]]] = None,
                 token: Optional[str] = None,
                 body_fault: Optional[Callable[[str, bytes], Optional[int]]] = None):
        self.seen: List[tuple] = []
        self.times: List[float] = []
        self.bodies: List[bytes] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as model servers answer

            def do_GET(self):
                proxy._handle(self)

            def do_POST(self):
                proxy._handle(self)

            def log_message(self, *args):
                pass

        self._upstream_port = upstream_port
        self._fault = fault
        self._body_fault = body_fault
        self._token = token
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def statuses(self, path_suffix: str = "/infer") -> List[int]:
        """The statuses answered to requests whose path ends with `path_suffix`."""
        return [status for _, path, status, _ in self.seen if path.endswith(path_suffix)]

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, request: http.server.BaseHTTPRequestHandler):
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        authorization = request.headers.get("Authorization")
        with self._lock:
            number = len(self.seen) + 1
            status = self._body_fault(request.command, body) if self._body_fault else None
            if status is None and self._fault:
                status = self._fault(number, request.command, request.path)
            status, headers = status if isinstance(status, tuple) else (status, {})
            if status is None and self._token and authorization != f"Bearer {self._token}":
                status = 401
            self.seen.append((request.command, request.path, status, authorization))
            self.times.append(time.monotonic())
            self.bodies.append(body)
        if status is not None:
            self._answer(request, status, json.dumps(
                {"error": f"injected by the test proxy: {status}"}).encode(), headers)
            return
        try:
            upstream = http.client.HTTPConnection("127.0.0.1", self._upstream_port, timeout=30)
            upstream.request(request.command, request.path, body=body or None,
                             headers={"Content-Type": "application/json"})
            response = upstream.getresponse()
            content = response.read()
            upstream.close()
        except OSError:  # the server is gone: drop the client's connection unanswered
            with self._lock:
                self.seen[number - 1] = (request.command, request.path, 0, authorization)
            request.close_connection = True
            return
        with self._lock:
            self.seen[number - 1] = (request.command, request.path, response.status,
                                     authorization)
        self._answer(request, response.status, content)

    @staticmethod
    def _answer(request, status: int, content: bytes, headers=None):
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        request.wfile.write(content)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def kill_at(server, posts: int):
    """A FaultProxy fault that kills `server` (a `servers.ServerProcess`) when the
    `posts`-th inference request (POST) comes, as a crash would, and answers none itself."""
    seen = []

    def fault(number, method, path):
        if method == "POST":
            seen.append(number)
            if len(seen) == posts:
                server.kill()
        return None

    return fault
