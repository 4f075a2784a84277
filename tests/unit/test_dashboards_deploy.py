"""``streamon dashboards deploy``: a CLIENT unit test against a FAKE Grafana.

There is no Grafana server on this machine. ``FakeGrafana`` below is a stand-in, a small local
HTTP server that implements only the endpoints the deploy calls (folders, datasource lookup
by uid and name, dashboard get and save) and records every request. It shows what the client
sends (paths, bodies, headers), not that a real Grafana accepts it; the payload shapes follow
Grafana's HTTP API documentation (folder API, dashboard API ``POST /api/dashboards/db``).

Checked: the folder is created once and reused by a second deploy, every Prometheus
datasource reference is rewritten to the resolved uid, the token goes out as a Bearer header
and is never printed, a second deploy of unchanged dashboards saves nothing, and a bad token
gives one line with the fix.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from click.testing import CliRunner

from streamon.cli import cli
from streamon.config import Settings, default_settings
from streamon.dashboards import deploy_dashboards, rewrite_datasource

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
TOKEN = "glsa_s3cr3t-token-value"


class FakeGrafana:
    """Stand-in Grafana (see the module docstring): folders, datasources, dashboards."""

    def __init__(self, token: str = TOKEN) -> None:
        self.requests: list[dict[str, Any]] = []
        self.folders: list[dict[str, Any]] = []
        self.datasources = [{"uid": "prom-uid-7", "name": "Prometheus", "type": "prometheus"}]
        self.dashboards: dict[str, dict[str, Any]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = urlsplit(self.path).path
                outer.requests.append(
                    {"method": method, "path": path, "body": body, "auth": self.headers.get("Authorization")}
                )
                if self.headers.get("Authorization") != f"Bearer {token}":
                    return self._reply(401, {"message": "Unauthorized"})
                status, reply = outer.route(method, path, body)
                self._reply(status, reply)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/api/folders":
            return 200, [
                {"id": i + 1, "uid": f["uid"], "title": f["title"]} for i, f in enumerate(self.folders)
            ]
        if method == "POST" and path == "/api/folders":
            if any(f["uid"] == body["uid"] for f in self.folders):
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders.append({"uid": body["uid"], "title": body["title"]})
            return 200, {"id": len(self.folders), "uid": body["uid"], "title": body["title"]}
        for kind in ("uid", "name"):
            prefix = f"/api/datasources/{kind}/"
            if method == "GET" and path.startswith(prefix):
                key = unquote(path[len(prefix) :])
                found = [d for d in self.datasources if d[kind] == key]
                return (200, found[0]) if found else (404, {"message": "Data source not found"})
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            uid = unquote(path[len("/api/dashboards/uid/") :])
            if uid not in self.dashboards:
                return 404, {"message": "Dashboard not found"}
            return 200, self.dashboards[uid]
        if method == "POST" and path == "/api/dashboards/db":
            dash = dict(body["dashboard"])
            uid = dash["uid"]
            version = self.dashboards.get(uid, {}).get("dashboard", {}).get("version", 0) + 1
            dash.update(id=len(self.dashboards) + 1, version=version)
            url = f"/d/{uid}/{dash['title'].lower().replace(' ', '-')}"
            self.dashboards[uid] = {"dashboard": dash, "meta": {"folderUid": body["folderUid"], "url": url}}
            return 200, {"id": dash["id"], "uid": uid, "url": url, "status": "success", "version": version}
        return 404, {"message": f"fake Grafana does not implement {method} {path}"}

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    g = FakeGrafana()
    yield g
    g.close()


def settings_for(url: str, **dashboards: Any) -> Settings:
    d = default_settings().model_dump(by_alias=True, mode="json")
    d["monitoring"]["dashboards"].update({"grafana_url": url, **dashboards})
    return Settings.from_dict(d)


def datasource_uids(node: Any, kind: str = "prometheus") -> set[str]:
    """The uids of every ``kind`` datasource reference in a dashboard."""
    if isinstance(node, list):
        return set().union(*(datasource_uids(n, kind) for n in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    ref = node.get("datasource")
    found = {ref["uid"]} if isinstance(ref, dict) and ref.get("type") == kind else set()
    return found.union(*(datasource_uids(v, kind) for k, v in node.items() if k != "datasource"))


def test_deploy_creates_folder_once_rewrites_datasource_and_is_idempotent(grafana: FakeGrafana) -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    settings = settings_for(grafana.url, folder="ML monitoring")

    first = deploy_dashboards(settings, token=TOKEN, dashboards_dir=DASHBOARDS)
    assert [r.status for r in first] == ["created"] * len(files)
    assert len(grafana.calls("POST", "/api/folders")) == 1
    assert grafana.folders == [{"uid": "ml-monitoring", "title": "ML monitoring"}]
    saves = grafana.calls("POST", "/api/dashboards/db")
    assert len(saves) == len(files)
    for save, path in zip(saves, files, strict=True):
        source = json.loads(path.read_text())
        body = save["body"]
        assert body["folderUid"] == "ml-monitoring" and body["overwrite"] is True
        assert body["dashboard"]["uid"] == source["uid"] and body["dashboard"]["id"] is None
        # The repository's dashboards say uid "prometheus"; Grafana's datasource is "prom-uid-7"
        # (looked up by the configured name "Prometheus").
        assert datasource_uids(source) == {"prometheus"}
        assert datasource_uids(body["dashboard"]) == {"prom-uid-7"}
        # Grafana's own annotation datasource is not Prometheus: left as it was.
        assert datasource_uids(body["dashboard"], "grafana") == datasource_uids(source, "grafana")
        assert len(body["dashboard"]["panels"]) == len(source["panels"])
    assert {r["auth"] for r in grafana.requests} == {f"Bearer {TOKEN}"}

    # Second deploy: same folder (found by title, not created again), nothing saved again.
    grafana.requests.clear()
    second = deploy_dashboards(settings, token=TOKEN, dashboards_dir=DASHBOARDS)
    assert [r.status for r in second] == ["unchanged"] * len(files)
    assert grafana.calls("POST", "/api/folders") == []
    assert grafana.calls("POST", "/api/dashboards/db") == []
    assert len(grafana.folders) == 1

    # A changed datasource is a change: saved again, into the same folder, as an update.
    grafana.datasources.append({"uid": "other-prom", "name": "Other", "type": "prometheus"})
    third = deploy_dashboards(settings, token=TOKEN, dashboards_dir=DASHBOARDS, datasource="other-prom")
    assert [r.status for r in third] == ["updated"] * len(files)
    assert len(grafana.folders) == 1
    assert all(
        datasource_uids(c["body"]["dashboard"]) == {"other-prom"}
        for c in grafana.calls("POST", "/api/dashboards/db")
    )
    assert all(r.version == 2 for r in third)


def test_cli_deploy_reads_the_token_file_and_never_prints_it(grafana: FakeGrafana, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    d = default_settings().model_dump(by_alias=True, mode="json")
    d["monitoring"]["dashboards"]["grafana_url"] = grafana.url
    config.write_text(yaml.safe_dump(d))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = ["dashboards", "deploy", "--config", str(config), "--token-file", str(token_file),
            "--dashboards-dir", str(DASHBOARDS), "--folder", "streamon"]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # stderr may carry log lines of other tests' handlers
    assert len(lines) == len(list(DASHBOARDS.glob("*.json")))
    assert all(line.startswith("created") and grafana.url in line for line in lines), lines
    assert TOKEN not in result.output  # stdout and stderr
    assert grafana.folders == [{"uid": "streamon", "title": "streamon"}]
    assert {r["auth"] for r in grafana.requests} == {f"Bearer {TOKEN}"}

    # Token from the environment; second run: unchanged, same single folder.
    result = runner.invoke(cli, args[:4] + args[6:], env={"GRAFANA_TOKEN": TOKEN}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert all(line.startswith("unchanged") for line in result.stdout.splitlines()), result.output
    assert len(grafana.folders) == 1


def test_wrong_token_is_one_line_with_the_fix_and_no_secret(
    grafana: FakeGrafana, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamon.cli import main

    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.delenv("GRAFANA_TOKEN_FILE", raising=False)
    config = tmp_path / "c.yaml"
    d = default_settings().model_dump(by_alias=True, mode="json")
    d["monitoring"]["dashboards"]["grafana_url"] = grafana.url
    config.write_text(yaml.safe_dump(d))
    wrong = "glsa_wrong-token-123"
    token_file = tmp_path / "token"
    token_file.write_text(wrong)
    for extra in (["--token-file", str(token_file)], []):
        with pytest.raises(SystemExit) as exit_info:
            main(
                ["dashboards", "deploy", "--config", str(config), "--dashboards-dir", str(DASHBOARDS), *extra]
            )
        assert exit_info.value.code == 1
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1, err
        assert "HTTP 401" in err and "--token-file" in err and "GRAFANA_TOKEN" in err, err
        assert wrong not in err
    assert grafana.requests[0]["auth"] == f"Bearer {wrong}"
    assert grafana.requests[-1]["auth"] is None  # no token anywhere: none sent


def test_unknown_datasource_and_unreachable_grafana(grafana: FakeGrafana) -> None:
    from streamon.dashboards import GrafanaError

    with pytest.raises(GrafanaError, match="no datasource with uid or name 'nope'"):
        deploy_dashboards(
            settings_for(grafana.url), token=TOKEN, dashboards_dir=DASHBOARDS, datasource="nope"
        )
    assert grafana.calls("POST", "/api/dashboards/db") == []
    closed = FakeGrafana()
    closed.close()
    with pytest.raises(GrafanaError, match="cannot reach Grafana"):
        deploy_dashboards(settings_for(closed.url), token=TOKEN, dashboards_dir=DASHBOARDS, timeout=2)


def test_auto_deploy_honours_the_switch_and_never_raises(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamon.dashboards import auto_deploy

    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    monkeypatch.chdir(ROOT)
    assert auto_deploy(settings_for(grafana.url)) is None  # auto_deploy: false (the default)
    assert grafana.requests == []
    results = auto_deploy(settings_for(grafana.url, auto_deploy=True))
    assert results is not None and {r.status for r in results} == {"created"}
    closed = FakeGrafana()
    closed.close()
    assert auto_deploy(settings_for(closed.url, auto_deploy=True)) is None  # logged, not raised


def test_rewrite_leaves_non_prometheus_references() -> None:
    dash = {"annotations": {"list": [{"datasource": {"type": "grafana", "uid": "-- Grafana --"}}]},
            "panels": [{"datasource": "-- Mixed --"}, {"datasource": {"uid": "prometheus"}}]}  # fmt: skip
    out = rewrite_datasource(dash, "x")
    assert out["annotations"] == dash["annotations"]
    assert out["panels"] == [
        {"datasource": "-- Mixed --"},
        {"datasource": {"uid": "x", "type": "prometheus"}},
    ]
