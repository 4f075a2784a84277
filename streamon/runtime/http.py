"""The worker's HTTP endpoint: /metrics (Prometheus), /healthz, /readyz and /report (HTML).

With a web configuration file (:mod:`streamon.webconfig`) the endpoint speaks TLS and asks
for basic auth. Every connection is handled in its own thread (ThreadingHTTPServer), and
the TLS handshake happens there too, not in the accepting thread: a client that connects
and stays silent, speaks plain HTTP to the TLS port or offers a bad certificate only costs
its own connection.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamon.webconfig import REALM, Authenticator, WebConfig

log = logging.getLogger(__name__)

HEALTH_PATHS = ("/healthz", "/readyz")
# Long enough for a scrape over a slow link, short enough that idle connections do not
# pile up threads.
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], web: WebConfig | None
    ) -> None:
        self.web = web
        self.tls = web.ssl_context() if web is not None else None
        self._last_warning = 0.0
        super().__init__(address, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.tls is not None:
            # The handshake waits for the connection's own thread (finish_request).
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                request.do_handshake()
            except (OSError, ValueError) as exc:  # SSLError and timeouts are OSErrors
                self._warn(f"TLS handshake with {client_address[0]} failed: {exc}")
                return  # shutdown_request closes the connection
            if self.web is not None and not self.web.san_allowed(request.getpeercert()):
                self._warn(f"client certificate of {client_address[0]} matches no client_allowed_sans")
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is not worth a traceback on stderr.
        log.debug("HTTP connection from %s failed", client_address, exc_info=True)

    def _warn(self, message: str) -> None:
        # Port scanners and probes can fail handshakes all day: one line a minute at most.
        now = time.monotonic()
        if now - self._last_warning >= 60.0:
            self._last_warning = now
            log.warning("%s (further failures within a minute are not logged)", message)
        else:
            log.debug("%s", message)


class MetricsServer:
    """Serves ``registry`` at ``metrics_path``; health answers come from the callables.

    ``web_config`` turns on TLS and/or basic auth for every path; ``health_without_auth``
    exempts /healthz and /readyz from basic auth (Kubernetes probes send no credentials).

    >>> from prometheus_client import CollectorRegistry
    >>> server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0)
    >>> server.url("/healthz").startswith("http://127.0.0.1:")
    True
    >>> server.stop()
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        metrics_path: str = "/metrics",
        healthy: Callable[[], bool] = lambda: True,
        ready: Callable[[], bool] = lambda: True,
        web_config: WebConfig | None = None,
        health_without_auth: bool = False,
        pages: Mapping[str, Callable[[], bytes]] | None = None,
    ) -> None:
        outer = self
        html_pages = dict(pages or {})  # extra GET paths answered with HTML (the live report)
        auth = Authenticator(web_config.basic_auth_users if web_config is not None else {})
        headers = web_config.http_server_config.headers.items() if web_config is not None else []
        self.auth = auth

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                exempt = health_without_auth and path in HEALTH_PATHS
                if not exempt and not auth.check(self.headers.get("Authorization")):
                    self._answer(b"unauthorized\n", 401, "text/plain", challenge=True)
                elif path == outer.metrics_path:
                    self._answer(generate_latest(registry), 200, CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = healthy()
                    self._answer(b"ok\n" if ok else b"unhealthy\n", 200 if ok else 503, "text/plain")
                elif path == "/readyz":
                    ok = ready()
                    self._answer(b"ready\n" if ok else b"not ready\n", 200 if ok else 503, "text/plain")
                elif path in html_pages:
                    try:
                        page = html_pages[path]()
                    except Exception as exc:  # a page that fails must not take the endpoint down
                        log.exception("rendering %s failed", path)
                        self._answer(f"{path} failed: {exc}\n".encode(), 500, "text/plain")
                    else:
                        self._answer(page, 200, "text/html; charset=utf-8")
                else:
                    self._answer(b"not found\n", 404, "text/plain")

            def _answer(self, body: bytes, status: int, ctype: str, challenge: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if challenge:
                    self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
                return

        self.metrics_path = metrics_path
        self._server = _Server((host, port), Handler, web_config)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self._server.tls is not None else "http"

    def url(self, path: str = "") -> str:
        """Where the endpoint answers, e.g. for the startup log line."""
        host = str(self._server.server_address[0])
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
