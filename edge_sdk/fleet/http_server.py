"""One HTTP server for the fleet: the read-only web dashboard, its JSON API and ``/metrics``.

Stdlib ``http.server`` (a thread per request): the dashboard is a handful of static
files shipped in the package (``edge_sdk/fleet/static``, no CDN, no build step) and a
few JSON reads. Live updates are server-sent events: ``/api/events`` sends ``change``
whenever :meth:`DashboardData.version` moves, and the page re-reads what it shows.

Exposure: loopback by default. Any other address needs a token (``Authorization:
Bearer TOKEN``, or ``?token=TOKEN`` once, which sets a cookie for the page); TLS is a
reverse proxy's job (README). Only GET: nothing here changes the fleet.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from device_agent.errors import EdgeError
from edge_sdk.fleet.dashboard import MAX_RANGE_S, DashboardData
from edge_sdk.fleet.metrics import Metrics

log = logging.getLogger(__name__)

STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COOKIE = "edge_token"
SSE_POLL_S = 1.0
SSE_KEEPALIVE_S = 15.0


@dataclass(frozen=True, kw_only=True)
class HttpOptions:
    """Where to listen and the token required when that is not loopback."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None


def parse_listen(value: str, *, token: str | None = None, option: str = "--http") -> HttpOptions:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (loopback) → options; refuses an address
    beyond loopback without a token."""
    host, sep, port_s = value.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    host = host or "127.0.0.1"
    try:
        port = int(port_s)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise EdgeError(f"{option}: expected HOST:PORT with a port from 0 to 65535, found {value!r}") from None
    if not is_loopback(host) and not token:
        raise EdgeError(
            f"{option} {value}: listening beyond loopback needs a token (--http-token or "
            "EDGE_HTTP_TOKEN); put TLS in front with a reverse proxy (README: Fleet dashboard)"
        )
    return HttpOptions(host=host, port=port, token=token or None)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address: the only hosts served without a token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FleetHttpServer(ThreadingHTTPServer):
    """The server; ``server_port`` is the port bound (useful with port 0)."""

    daemon_threads = True

    def __init__(self, options: HttpOptions, *, data: DashboardData | None, metrics: Metrics | None):
        self.options, self.data, self.metrics = options, data, metrics
        self.stopping = threading.Event()
        self._version: tuple[float, Any] = (0.0, None)
        self._version_lock = threading.Lock()
        super().__init__((options.host, options.port), _Handler)

    def version(self) -> Any:
        """The data's change marker, read at most once per poll interval for all clients."""
        with self._version_lock:
            at, value = self._version
            if time.monotonic() - at >= SSE_POLL_S / 2 and self.data is not None:
                value = self.data.version()
                self._version = (time.monotonic(), value)
            return value

    def start(self) -> FleetHttpServer:
        """Serve on a daemon thread; returns the server, for chaining."""
        threading.Thread(target=self.serve_forever, name="fleet-http", daemon=True).start()
        return self

    def stop(self) -> None:
        """End open event streams, stop serving, free the port and close the store."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        if self.data is not None:
            self.data.close()

    @property
    def url(self) -> str:
        """The dashboard's address as bound (the real port when 0 was asked; IPv6 in brackets)."""
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        return f"http://{host}:{self.server_port}/"


def serve_http(
    options: HttpOptions, *, data: DashboardData | None = None, metrics: Metrics | None = None
) -> FleetHttpServer:
    """Listen and serve in a background thread."""
    try:
        return FleetHttpServer(options, data=data, metrics=metrics).start()
    except OSError as e:
        raise EdgeError(f"--http {options.host}:{options.port}: cannot listen ({e})") from e


class _Handler(BaseHTTPRequestHandler):
    server: FleetHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)

    def do_POST(self) -> None:
        self._plain(405, "read-only: GET only\n", allow="GET")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if not self._authorized(url.path, query):
            return
        try:
            self._route(url.path, query)
        except EdgeError as e:
            self._json({"error": str(e)}, 400)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("dashboard: %s failed", url.path)
            self._json({"error": "the fleet database could not be read; see the server's log"}, 503)

    def _route(self, path: str, query: dict[str, str]) -> None:
        data, now = self.server.data, time.time()
        if path == "/metrics":
            if self.server.metrics is None:
                self._plain(404, "no collector metrics here (edge fleet ui)\n")
            else:
                self._plain(200, self.server.metrics.render(), ctype="text/plain; version=0.0.4")
        elif path in ("/", "/index.html"):
            self._static("index.html")
        elif path == "/favicon.ico":
            self._static("favicon.svg")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif data is None:
            self._plain(404, "not found\n")
        elif path == "/api/fleet":
            self._json(data.fleet(now))
        elif path == "/api/device":
            self._device(data, query, now)
        elif path == "/api/alerts":
            self._json({"alerts": data.alerts()})
        elif path == "/api/rollouts":
            self._json({"rollouts": data.rollouts()})
        elif path == "/api/events":
            self._events()
        else:
            self._plain(404, "not found\n")

    def _device(self, data: DashboardData, query: dict[str, str], now: float) -> None:
        try:
            span = float(query.get("range", "3600"))
            end = float(query.get("end", now))
        except ValueError:
            raise EdgeError("range and end: expected seconds") from None
        if not 60 <= span <= MAX_RANGE_S:
            raise EdgeError(f"range: expected 60 to {MAX_RANGE_S:.0f} seconds, found {span:g}")
        body = data.device(query.get("fleet", ""), query.get("device", ""), start=end - span, end=end, now=now)
        if body is None:
            self._json({"error": "no such device"}, 404)
        else:
            self._json(body)

    def _authorized(self, path: str, query: dict[str, str]) -> bool:
        token = self.server.options.token
        if not token:
            return True
        given = query.get("token") or _bearer(self.headers.get("Authorization", "")) or _cookie(
            self.headers.get("Cookie", "")
        )
        if given and hmac.compare_digest(given.encode(), token.encode()):
            if "token" in query and path in ("/", "/index.html"):
                # Once from the link, then from the cookie: the token leaves the address bar.
                self.send_response(303)
                self.send_header("Location", "/")
                self.send_header("Set-Cookie", f"{_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            return True
        self._plain(401, "a token is required: open /?token=TOKEN or send Authorization: Bearer TOKEN\n")
        return False

    # ---- responses -------------------------------------------------------------------
    def _send(self, code: int, body: bytes, ctype: str, **extra: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for k, v in extra.items():
            self.send_header(k.replace("_", "-").title(), v)
        self.end_headers()
        self.wfile.write(body)

    def _plain(self, code: int, text: str, ctype: str = "text/plain; charset=utf-8", **extra: str) -> None:
        self._send(code, text.encode(), ctype, **extra)

    def _json(self, obj: Any, code: int = 200) -> None:
        self._send(code, orjson.dumps(obj, default=str), "application/json")

    def _static(self, name: str) -> None:
        if name not in STATIC:  # a fixed list: no path from the request reaches the filesystem
            self._plain(404, "not found\n")
            return
        body = resources.files("edge_sdk.fleet").joinpath("static", name).read_bytes()
        self._send(200, body, STATIC[name])

    def _events(self) -> None:
        """Server-sent events: ``change`` when the data moved, a comment as keepalive."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")  # nginx: pass events through unbuffered
        self.end_headers()
        self.close_connection = True
        last, quiet = None, time.monotonic()
        self.wfile.write(b"retry: 2000\n\n")
        while not self.server.stopping.is_set():
            version = self.server.version()
            if version != last:
                last = version
                self.wfile.write(b"event: change\ndata: " + orjson.dumps(version, default=str) + b"\n\n")
                quiet = time.monotonic()
            elif time.monotonic() - quiet > SSE_KEEPALIVE_S:
                self.wfile.write(b": keepalive\n\n")
                quiet = time.monotonic()
            self.wfile.flush()
            self.server.stopping.wait(SSE_POLL_S)


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _cookie(header: str) -> str:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == _COOKIE:
            return v
    return ""
