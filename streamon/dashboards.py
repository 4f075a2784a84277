"""``streamon dashboards deploy``: push deploy/grafana/dashboards/*.json through Grafana's HTTP API.

- The folder (``monitoring.dashboards.folder``) is found by title (``GET /api/folders``) and
  created only when missing (``POST /api/folders``), so a second deploy reuses it.
- Every panel's and template variable's Prometheus ``datasource`` is pointed at the
  datasource given (``--datasource`` or ``monitoring.dashboards.datasource``, a uid or a
  name, resolved to its uid through ``/api/datasources/uid|name/...``).
- A dashboard identical to the one Grafana has in that folder is left alone; any other is
  saved with ``POST /api/dashboards/db`` (``overwrite: true``, ``folderUid``). Running the
  deploy twice therefore changes nothing the second time.
- The token (``--token-file``, ``GRAFANA_TOKEN_FILE`` or ``GRAFANA_TOKEN``) is sent as
  ``Authorization: Bearer``; it is never printed, and URLs are shown without credentials.

:func:`auto_deploy` is what a worker calls at start when ``monitoring.dashboards.auto_deploy``
is true: it deploys and logs, and never raises (Grafana being down must not stop monitoring).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from streamon.config import Settings
from streamon.doctor import display_url
from streamon.errors import InputError, StreamonError

log = logging.getLogger("streamon.dashboards")

TOKEN_ENV = "GRAFANA_TOKEN"
TOKEN_FILE_ENV = "GRAFANA_TOKEN_FILE"
DEPLOY_MESSAGE = "streamon dashboards deploy"
# Fields Grafana sets on save; they do not make two dashboards different.
_VOLATILE = ("id", "version", "iteration")


class GrafanaError(StreamonError):
    """Grafana is unreachable or refused a request; the message says what to do."""


@dataclass(frozen=True)
class DeployResult:
    title: str
    uid: str
    status: str  # created | updated | unchanged
    url: str
    version: int | None = None

    def line(self) -> str:
        version = f" (version {self.version})" if self.version is not None else ""
        return f"{self.status:<9} {self.title} -> {self.url}{version}"


# --------------------------------------------------------------------------- pure helpers


def read_token(token_file: Path | None = None) -> str | None:
    """The Grafana token: from ``token_file``, else $GRAFANA_TOKEN_FILE, else $GRAFANA_TOKEN."""
    path = token_file or (Path(os.environ[TOKEN_FILE_ENV]) if os.environ.get(TOKEN_FILE_ENV) else None)
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
        if not token:
            raise InputError(f"the token file {path} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def folder_uid_for(title: str) -> str:
    """A Grafana folder uid derived from the title (letters, digits, '-', '_'; at most 40).

    >>> folder_uid_for("streamon"), folder_uid_for("ML monitoring / fraud")
    ('streamon', 'ml-monitoring-fraud')
    """
    slug = re.sub(r"[^a-z0-9_-]+", "-", title.lower()).strip("-")
    return (slug or "streamon")[:40]


def rewrite_datasource(node: Any, uid: str) -> Any:
    """A copy of ``node`` whose Prometheus datasource references all point at ``uid``.

    Object references (``{"type": "prometheus", "uid": ...}``, also without a type) get the
    uid; a string reference (a name or an export placeholder like ``${DS_PROMETHEUS}``)
    becomes an object reference. Grafana's own pseudo datasources are left alone.

    >>> out = rewrite_datasource({"panels": [{"datasource": {"type": "prometheus", "uid": "prometheus"},
    ...   "targets": [{"datasource": "${DS_PROMETHEUS}"}]}]}, "abc")
    >>> out["panels"][0]["datasource"], out["panels"][0]["targets"][0]["datasource"]
    ({'type': 'prometheus', 'uid': 'abc'}, {'type': 'prometheus', 'uid': 'abc'})
    >>> rewrite_datasource({"datasource": {"type": "datasource", "uid": "grafana"}}, "abc")
    {'datasource': {'type': 'datasource', 'uid': 'grafana'}}
    """
    if isinstance(node, list):
        return [rewrite_datasource(item, uid) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if (
            key == "datasource"
            and isinstance(value, dict)
            and value.get("type", "prometheus") == "prometheus"
        ):
            out[key] = {**value, "type": "prometheus", "uid": uid}
        elif key == "datasource" and isinstance(value, str) and not value.startswith("-- "):
            out[key] = {"type": "prometheus", "uid": uid}
        else:
            out[key] = rewrite_datasource(value, uid)
    return out


def _comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in _VOLATILE}


def default_dashboards_dir() -> Path:
    """deploy/grafana/dashboards of the working directory, else of the source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base / "deploy" / "grafana" / "dashboards"
        if candidate.is_dir():
            return candidate
    raise InputError("no deploy/grafana/dashboards here: pass --dashboards-dir")


# --------------------------------------------------------------------------- Grafana API


class GrafanaClient:
    """The few Grafana HTTP API calls the deploy needs, with one-line errors."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 10.0) -> None:
        import requests

        self.base = base_url.rstrip("/")
        self.shown = display_url(base_url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None, allow: tuple[int, ...] = ()) -> tuple[int, Any]:
        """(status, parsed JSON) of one request; GrafanaError unless 2xx or in ``allow``."""
        import requests

        try:
            resp = self.session.request(method, self.base + path, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise GrafanaError(
                f"cannot reach Grafana at {self.shown} ({type(exc).__name__}): start it, or set "
                "monitoring.dashboards.grafana_url / --grafana-url"
            ) from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if 200 <= resp.status_code < 300 or resp.status_code in allow:
            return resp.status_code, data
        message = data.get("message", "") if isinstance(data, dict) else resp.text[:200]
        if resp.status_code in (401, 403):
            raise GrafanaError(
                f"Grafana at {self.shown} refused {method} {path} (HTTP {resp.status_code} {message}): "
                "give a service-account token with the Editor role via --token-file, "
                f"${TOKEN_FILE_ENV} or ${TOKEN_ENV}"
            )
        raise GrafanaError(
            f"Grafana at {self.shown}: {method} {path} failed (HTTP {resp.status_code} {message})".rstrip()
        )

    def ensure_folder(self, title: str) -> tuple[str, bool]:
        """(uid of the folder titled ``title``, whether it was created now)."""
        _, folders = self.call("GET", "/api/folders?limit=1000")
        for f in folders or []:
            if f.get("title") == title:
                return str(f["uid"]), False
        uid = folder_uid_for(title)
        status, created = self.call("POST", "/api/folders", {"uid": uid, "title": title}, allow=(409, 412))
        if status in (409, 412):
            raise GrafanaError(
                f"Grafana at {self.shown}: cannot create folder {title!r}: its uid {uid!r} is taken by "
                "another folder; rename that folder or choose another --folder"
            )
        return str(created.get("uid", uid)), True

    def datasource_uid(self, ref: str) -> str:
        """The uid of the datasource whose uid or name is ``ref``."""
        status, found = self.call("GET", f"/api/datasources/uid/{quote(ref, safe='')}", allow=(403, 404))
        if status == 200:
            return str(found.get("uid", ref))
        denied = status == 403
        status, found = self.call("GET", f"/api/datasources/name/{quote(ref, safe='')}", allow=(403, 404))
        if status == 200:
            return str(found["uid"])
        if denied or status == 403:
            log.warning("the token may not read datasources; using %r as the datasource uid", ref)
            return ref
        raise GrafanaError(
            f"Grafana at {self.shown} has no datasource with uid or name {ref!r}: provision it "
            "(deploy/grafana/provisioning/datasources/prometheus.yml) or pass --datasource UID"
        )

    def save_dashboard(self, dashboard: dict[str, Any], folder_uid: str) -> DeployResult:
        uid = str(dashboard.get("uid") or "")
        title = str(dashboard.get("title") or uid)
        status = "created"
        if uid:
            code, existing = self.call("GET", f"/api/dashboards/uid/{quote(uid, safe='')}", allow=(404,))
            if code == 200 and isinstance(existing, dict):
                meta = existing.get("meta") or {}
                same_folder = meta.get("folderUid", "") == folder_uid
                if same_folder and _comparable(existing.get("dashboard") or {}) == _comparable(dashboard):
                    return DeployResult(
                        title,
                        uid,
                        "unchanged",
                        self.base_url(meta.get("url")),
                        existing["dashboard"].get("version"),
                    )
                status = "updated"
        body = {
            "dashboard": {**dashboard, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": DEPLOY_MESSAGE,
        }
        _, saved = self.call("POST", "/api/dashboards/db", body)
        saved = saved if isinstance(saved, dict) else {}
        return DeployResult(
            title, str(saved.get("uid", uid)), status, self.base_url(saved.get("url")), saved.get("version")
        )

    def base_url(self, path: Any) -> str:
        return f"{self.shown}{path}" if isinstance(path, str) and path.startswith("/") else self.shown


# --------------------------------------------------------------------------- the deploy


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    files = sorted(directory.glob("*.json"))
    if not files:
        raise InputError(f"no dashboard *.json in {directory}")
    out = []
    for path in files:
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read dashboard {path}: {exc}") from None
    return out


def deploy_dashboards(
    settings: Settings,
    *,
    grafana_url: str | None = None,
    folder: str | None = None,
    datasource: str | None = None,
    token: str | None = None,
    dashboards_dir: Path | None = None,
    timeout: float = 10.0,
) -> list[DeployResult]:
    """Create or update every dashboard in Grafana; one result per dashboard.

    Arguments left None come from ``settings.monitoring.dashboards`` (and the token from the
    environment, see :func:`read_token`).
    """
    cfg = settings.monitoring.dashboards
    dashboards = load_dashboards(dashboards_dir or default_dashboards_dir())
    client = GrafanaClient(
        grafana_url or cfg.grafana_url, token if token is not None else read_token(), timeout
    )
    folder_uid, created = client.ensure_folder(folder or cfg.folder)
    if created:
        log.info("created folder %r (uid %s)", folder or cfg.folder, folder_uid)
    ds_uid = client.datasource_uid(datasource or cfg.datasource)
    results = []
    for dashboard in dashboards:
        prepared = rewrite_datasource(copy.deepcopy(dashboard), ds_uid)
        prepared.pop("id", None)
        results.append(client.save_dashboard(prepared, folder_uid))
    return results


def auto_deploy(settings: Settings, logger: logging.Logger = log) -> list[DeployResult] | None:
    """Deploy at worker start when ``monitoring.dashboards.auto_deploy``; log, never raise."""
    if not settings.monitoring.dashboards.auto_deploy:
        return None
    try:
        results = deploy_dashboards(settings)
    except StreamonError as exc:
        logger.warning("dashboards not deployed (monitoring.dashboards.auto_deploy): %s", exc)
        return None
    for r in results:
        logger.info("dashboard %s", r.line())
    return results
