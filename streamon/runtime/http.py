"""The worker's HTTP endpoint: /metrics (Prometheus), /healthz and /readyz."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class MetricsServer:
    """Serves ``registry`` at ``metrics_path``; health answers come from the callables."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        metrics_path: str = "/metrics",
        healthy: Callable[[], bool] = lambda: True,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == outer.metrics_path:
                    body, status, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
                elif path == "/healthz":
                    ok = healthy()
                    body, status, ctype = (
                        (b"ok\n" if ok else b"unhealthy\n"),
                        (200 if ok else 503),
                        "text/plain",
                    )
                elif path == "/readyz":
                    ok = ready()
                    body, status, ctype = (
                        (b"ready\n" if ok else b"not ready\n"),
                        (200 if ok else 503),
                        "text/plain",
                    )
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
                return

        self.metrics_path = metrics_path
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
