"""The deployment assets are valid without Docker or a Kubernetes cluster, and agree with streamon.

docker-compose.yml, Dockerfile, .dockerignore:
  ``composecheck`` (deploy/tools/composecheck) loads the compose file with compose-go, the
  loader behind ``docker compose config`` (interpolation, the compose-spec JSON schema,
  normalization, consistency checks), adds the ``--scale`` checks, and parses the Dockerfile
  with BuildKit's own frontend (build checks, COPY sources after .dockerignore, stage
  references). Building the real docker compose CLI from the module proxy takes ~10 minutes
  cold (deploy/tools/install-compose.sh, optional); composecheck builds in ~35 s. The raw file
  is also validated against the official compose-spec schema with Python's jsonschema.

deploy/k8s/*.yaml:
  ``k8svalidate`` (deploy/tools/k8svalidate) decodes every document STRICTLY into the
  Kubernetes API Go types, the Prometheus operator's ServiceMonitor and Go types mirroring
  KEDA's ScaledObject / TriggerAuthentication (unknown fields, duplicate keys and wrong types
  fail) and checks references across the files (selectors, probe ports, volumes, ConfigMap
  keys, ServiceMonitor ports, PDB, the ScaledObject's target, trigger and partition cap).
  The KEDA documents are also validated against KEDA's own CRD schemas (tests/integration/crds/keda,
  vendored from the kedacore/keda/v2 Go module) with Python's jsonschema, unknown fields refused
  and the CRDs' CEL rules translated by hand.

Both tools are built by ``bash deploy/tools/install-k8svalidate.sh`` and
``bash deploy/tools/install-composecheck.sh`` (``make test`` runs them first, through
``deploy/install-tools.sh``; Go and the Go module proxy) into ``$STREAMON_TOOLS_BIN``
(default ~/.cache/streamon/tools/bin). promtool comes from ``bash deploy/install-tools.sh``.
Without them these tests FAIL: they are not skipped.

On top of the tools: the workers are scalable and scraped under the names Prometheus uses,
every mounted file exists, every streamon command line parses with the real CLI, the configs
pass ``streamon check-config``, and the probes use /healthz and /readyz on the metrics port.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from streamon.cli import cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_CONFIG = ROOT / "configs" / "compose_config.yaml"
MONITORING_CONFIG = ROOT / "configs" / "monitoring_config.yaml"
K8S = ROOT / "deploy" / "k8s"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
TOOLS_SRC = ROOT / "deploy" / "tools"
TOOLS_BIN = Path(os.environ.get("STREAMON_TOOLS_BIN", Path.home() / ".cache" / "streamon" / "tools" / "bin"))

# Where the image and the manifests put things (Dockerfile, docker-compose.yml, deploy/k8s).
CONFIG_IN_CONTAINER = "/etc/streamon/config.yaml"
STATE_DIR = "/var/lib/streamon"
# The scrape jobs the alert rules and dashboards select (deploy/prometheus/alert_rules.yml).
STREAMON_JOB = "streamon"


# ------------------------------------------------------------------ tools


def _sources_hash(tool: str) -> str:
    """Same bytes as deploy/tools/go-tool.sh::sources_hash."""
    src = TOOLS_SRC / tool
    names = ["go.mod", "go.sum", *sorted(p.name for p in src.glob("*.go"))]
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + (src / name).read_bytes() + b"\0")
    return h.hexdigest()


def _tool(name: str) -> Path:
    path = TOOLS_BIN / name
    install = f"bash deploy/tools/install-{name}.sh"
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} is not installed at {path}: run `{install}` (needs Go >= 1.24)")
    stamp = TOOLS_BIN / f".{name}.sha256"
    if not stamp.is_file() or stamp.read_text().strip() != _sources_hash(name):
        pytest.fail(f"{path} was built from other sources than deploy/tools/{name}: run `{install}`")
    return path


@pytest.fixture(scope="module")
def composecheck() -> Path:
    return _tool("composecheck")


@pytest.fixture(scope="module")
def k8svalidate() -> Path:
    return _tool("k8svalidate")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `bash deploy/install-tools.sh` (Debian package prometheus)"
        )
    return path


def _run(*argv: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def _streamon_check_config(path: Path) -> str:
    exe = Path(sys.executable).with_name("streamon")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-c", "from streamon.cli import main; main()"]
    proc = subprocess.run([*argv, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"streamon check-config {path}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def _parse_streamon_argv(argv: list[str]) -> dict[str, Any]:
    """Parse a `streamon ...` command line with the real CLI, without running it."""
    assert argv, "empty streamon command line"
    group_ctx = click.Context(cli)
    cmd = cli.get_command(group_ctx, argv[0])
    assert cmd is not None, f"streamon has no command {argv[0]!r} (it has {cli.list_commands(group_ctx)})"
    try:
        with cmd.make_context(argv[0], list(argv[1:]), parent=group_ctx) as ctx:
            return dict(ctx.params)
    except click.UsageError as exc:
        raise AssertionError(f"`streamon {shlex.join(argv)}`: {exc.format_message()}") from None


def _check_streamon_command(argv: list[str], where: str) -> dict[str, Any]:
    params = _parse_streamon_argv(argv)
    if argv[0] == "simulate":
        from streamon.simulate import parse_drift, parse_variants

        parse_drift(params["drift"])
        parse_variants(params["variants"])
    if "config_path" in params:
        assert str(params["config_path"]) == CONFIG_IN_CONTAINER, f"{where}: --config {params['config_path']}"
    return params


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ------------------------------------------------------------------ compose


@pytest.fixture(scope="module")
def compose(composecheck: Path) -> dict[str, Any]:
    """The normalized model, as `docker compose config --format json` prints it."""
    proc = _run(composecheck, "-f", COMPOSE_FILE, "-format", "json", "-scale", "worker=6")
    assert proc.returncode == 0, f"composecheck rejected docker-compose.yml:\n{proc.stderr}"
    model: dict[str, Any] = json.loads(proc.stdout)
    return model


@pytest.fixture(scope="module")
def compose_settings() -> Any:
    from streamon.config import load_config

    return load_config(COMPOSE_CONFIG)


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """target -> host path of a service's bind mounts."""
    return {v["target"]: Path(v["source"]) for v in service.get("volumes", []) if v["type"] == "bind"}


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The host file behind a path inside the container, through the service's bind mounts."""
    for target, source in sorted(_bind_mounts(service).items(), key=lambda kv: -len(kv[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / os.path.relpath(container_path, target)
    raise AssertionError(f"{container_path} is not inside a bind mount of the service")


def _worker_argv(service: dict[str, Any]) -> list[str]:
    """What the worker container runs, with the entrypoint's shell wrapper expanded."""
    entrypoint, command = service.get("entrypoint") or ["streamon"], service["command"]
    if entrypoint == ["streamon"]:
        return list(command)
    assert entrypoint[:2] == ["/bin/sh", "-c"], f"unexpected worker entrypoint {entrypoint}"
    script = entrypoint[2]
    assert script.startswith("exec streamon "), "the shell must exec streamon (PID 1 gets SIGTERM)"
    words = shlex.split(script)[2:]
    argv: list[str] = []
    for w in words:
        if w == "$@":
            argv.extend(command)
        else:
            argv.append(w.replace("${HOSTNAME}", "a1b2c3d4e5f6"))
    return argv


def test_compose_file_is_valid_and_scalable(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "worker", "simulator", "alert-router", "prometheus", "alertmanager", "grafana"} <= set(
        services
    )
    worker = services["worker"]
    # `docker compose up --scale worker=N`: nothing in the worker may be unique per host.
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert not worker.get("ports"), "a published port on the worker would collide between replicas"
    assert worker["build"]["context"] == str(ROOT)


def test_compose_checker_rejects_broken_files(composecheck: Path, tmp_path: Path) -> None:
    base = yaml.safe_load(COMPOSE_FILE.read_text())
    cases: dict[str, tuple[Any, str]] = {}

    def case(name: str, expect: str) -> dict[str, Any]:
        doc = copy.deepcopy(base)
        cases[name] = (doc, expect)
        return doc

    case("unknown-key", "bogus")["services"]["worker"]["bogus"] = 1
    case("wrong-type", "replicas")["services"]["worker"]["deploy"]["replicas"] = "three"
    case("container-name", "container_name")["services"]["worker"]["container_name"] = "streamon-worker"
    case("fixed-port", "published port")["services"]["worker"]["ports"] = ["8080:8080"]
    case("unknown-dependency", "nosuch")["services"]["worker"]["depends_on"]["nosuch"] = {
        "condition": "service_started"
    }
    case("undeclared-volume", "grafana-dta")["services"]["grafana"]["volumes"][-1] = (
        "grafana-dta:/var/lib/grafana"
    )
    case("bad-healthcheck", "interval")["services"]["worker"]["healthcheck"]["interval"] = "often"
    for name, (doc, expect) in cases.items():
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        proc = _run(composecheck, "-f", path, "-project-directory", ROOT, "-q", "-scale", "worker=3")
        assert proc.returncode != 0, f"{name}: composecheck accepted it"
        assert expect in proc.stderr, f"{name}: {proc.stderr}"


def test_compose_file_matches_the_official_compose_spec_schema(composecheck: Path) -> None:
    proc = _run(composecheck, "-schema")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["title"] == "Compose Specification"
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator_cls(schema).iter_errors(doc)
    ]
    assert not errors, errors
    bad = copy.deepcopy(doc)
    bad["services"]["worker"]["restart"] = ["always"]
    assert list(validator_cls(schema).iter_errors(bad)), "the schema accepted a wrong type"


def test_dockerfile(composecheck: Path, tmp_path: Path) -> None:
    proc = _run(composecheck, "-dockerfile", ROOT / "Dockerfile", "-context", ROOT)
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout)[-1]
    assert final["base"] == "python:3.11-slim"
    assert final["entrypoint"] == ["streamon"]
    user = final["user"].split(":")[0]
    assert user and user not in ("root", "0"), f"the image runs as {final['user']!r}"
    assert STATE_DIR in final["volumes"]
    assert f"STREAMON_STATE_DIR={STATE_DIR}" in final["env"]
    assert not final["healthcheck"], "only `streamon worker` serves /healthz: no image-wide HEALTHCHECK"

    # The checker sees what `docker build` would fail on: a COPY source excluded by
    # .dockerignore (README.md is pyproject's readme: pip wheel needs it), a mount from an
    # unknown stage.
    ctx = tmp_path / "ctx"
    shutil.copytree(ROOT / "configs", ctx / "configs")
    (ctx / "streamon").mkdir()
    (ctx / "streamon" / "__init__.py").write_text("")
    for name in ("pyproject.toml", "README.md", "Dockerfile"):
        shutil.copy(ROOT / name, ctx / name)
    (ctx / ".dockerignore").write_text((ROOT / ".dockerignore").read_text() + "README.md\n")
    text = (ROOT / "Dockerfile").read_text().replace("from=build,", "from=biuld,")
    (ctx / "Dockerfile").write_text(text)
    proc = _run(composecheck, "-dockerfile", ctx / "Dockerfile", "-context", ctx)
    assert proc.returncode != 0
    assert "COPY README.md: excluded from the build context by .dockerignore" in proc.stderr
    assert "from=biuld: no such earlier stage" in proc.stderr


def test_compose_workers_get_unique_instance_ids_and_their_state_volume(
    compose: dict[str, Any], compose_settings: Any
) -> None:
    worker = compose["services"]["worker"]
    argv = _worker_argv(worker)
    params = _check_streamon_command(argv, "compose worker")
    assert argv[0] == "worker"
    # One id per replica (the container hostname), not the CLI default hostname-pid.
    assert "${HOSTNAME}" in worker["entrypoint"][2] and params["instance_id"] == "a1b2c3d4e5f6"
    assert str(params["state_dir"]) == STATE_DIR
    # Replicas beyond the input partitions would stand idle.
    replicas = worker["deploy"]["replicas"]
    assert 1 <= replicas <= compose_settings.kafka.partitions
    assert compose_settings.kafka.partitions == 6
    assert worker.get("stop_grace_period"), "SIGTERM must get time to commit the batch"


def test_compose_streamon_commands_parse_and_use_the_mounted_config(
    compose: dict[str, Any], compose_settings: Any
) -> None:
    services = compose["services"]
    for name in ("worker", "simulator", "alert-router"):
        service = services[name]
        argv = _worker_argv(service) if name == "worker" else list(service["command"])
        _check_streamon_command(argv, f"compose {name}")
        config = _host_path(service, CONFIG_IN_CONTAINER)
        assert config == COMPOSE_CONFIG, f"{name} mounts {config}"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    router = _parse_streamon_argv(list(services["alert-router"]["command"]))
    assert router["alertmanager_urls"] == ("http://alertmanager:9093",)
    assert "alertmanager" in services
    assert str(router["data_dir"]).startswith(STATE_DIR + "/"), (
        "the router's table belongs in the state volume"
    )


def test_compose_config_passes_check_config_and_reaches_kafka(
    compose: dict[str, Any], compose_settings: Any
) -> None:
    assert _streamon_check_config(COMPOSE_CONFIG).startswith("ok:")
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = dict(listener.split("://", 1) for listener in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    # The workers' bootstrap address is the in-network listener the broker advertises.
    assert compose_settings.kafka.bootstrap_servers == advertised["PLAINTEXT"] == "kafka:9092"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    prom = compose_settings.monitoring.prometheus
    assert prom.bind_address == "0.0.0.0" and prom.port == 8080


def test_compose_healthchecks(compose: dict[str, Any], compose_settings: Any) -> None:
    services = compose["services"]
    port = compose_settings.monitoring.prometheus.port
    test = " ".join(services["worker"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in test
    for name in ("kafka", "worker", "prometheus", "alertmanager"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_compose_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in _bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert ROOT in source.parents or source == ROOT, f"{name}: {source} is outside the repository"
    grafana = compose["services"]["grafana"]
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/streamon.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert _host_path(grafana, dashboards_path) == ROOT / "deploy" / "grafana" / "dashboards"
    assert list((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    for sub in ("datasources", "dashboards"):
        mounted = _host_path(grafana, f"/etc/grafana/provisioning/{sub}")
        assert mounted == ROOT / "deploy" / "grafana" / "provisioning" / sub
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    url = datasource["datasources"][0]["url"]
    assert url == "http://prometheus:9090" and "prometheus" in compose["services"]
    alertmanager = compose["services"]["alertmanager"]
    assert _host_path(alertmanager, "/etc/alertmanager/alertmanager.yml").is_file()
    assert _host_path(alertmanager, "/etc/alertmanager/secrets") == ROOT / "deploy/alertmanager/secrets"


def _compose_prometheus_config(compose: dict[str, Any]) -> tuple[dict[str, Any], str]:
    prometheus = compose["services"]["prometheus"]
    flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    path = flag.split("=", 1)[1]
    source = next(c["source"] for c in prometheus["configs"] if c["target"] == path)
    content: str = compose["configs"][source]["content"]
    return yaml.safe_load(content), content


def test_compose_prometheus_scrapes_every_worker_replica(
    compose: dict[str, Any], compose_settings: Any, promtool: str, tmp_path: Path
) -> None:
    config, content = _compose_prometheus_config(compose)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs[STREAMON_JOB]
    # Docker's DNS answers the service name with one A record per replica: any --scale.
    (sd,) = job["dns_sd_configs"]
    assert sd["type"] == "A" and sd["names"] == ["worker"] and "worker" in compose["services"]
    assert sd["port"] == compose_settings.monitoring.prometheus.port
    assert job.get("metrics_path", "/metrics") == compose_settings.monitoring.prometheus.metrics_path
    assert "static_configs" not in job, "static targets would scrape some replicas twice"

    # Everything else is deploy/prometheus/prometheus.yml: same jobs (the alert rules and the
    # dashboards select them by name), rule files, Alertmanager, external labels.
    repo = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert set(jobs) == {j["job_name"] for j in repo["scrape_configs"]}
    prometheus = compose["services"]["prometheus"]
    assert [_host_path(prometheus, f) for f in config["rule_files"]] == [
        PROMETHEUS_DIR / f for f in repo["rule_files"]
    ]
    assert config["alerting"] == repo["alerting"]
    assert config["global"]["external_labels"] == repo["global"]["external_labels"]
    am_host, am_port = repo["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0].split(":")
    assert am_host in compose["services"] and am_port == "9093"
    file_sd = jobs["streamon-file-sd"]["file_sd_configs"][0]["files"][0]
    assert _host_path(prometheus, os.path.dirname(file_sd)) == PROMETHEUS_DIR / "targets"

    # promtool on the compose config, with its container paths mapped to the repository.
    local = content
    for target, source in _bind_mounts(prometheus).items():
        local = local.replace(target + "/", str(source) + "/")
    (tmp_path / "prometheus.yml").write_text(local)
    proc = _run(promtool, "check", "config", tmp_path / "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_static_targets_of_prometheus_yml_are_the_compose_worker_containers(
    compose: dict[str, Any], compose_settings: Any
) -> None:
    """deploy/prometheus/prometheus.yml's static job names compose's worker containers."""
    repo = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(j for j in repo["scrape_configs"] if j["job_name"] == STREAMON_JOB)
    targets = job["static_configs"][0]["targets"]
    project, replicas = compose["name"], compose["services"]["worker"]["deploy"]["replicas"]
    port = compose_settings.monitoring.prometheus.port
    # Compose names replica i of service s in project p "p-s-i" (resolvable by Docker's DNS).
    assert targets == [f"{project}-worker-{i}:{port}" for i in range(1, replicas + 1)]


# ------------------------------------------------------------------ Kubernetes


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    objs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_docs(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objs, f"{key} defined twice"
            objs[key] = doc
    return objs


@pytest.fixture(scope="module")
def k8s_config_file(
    k8s: dict[tuple[str, str], dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("k8s") / "config.yaml"
    path.write_text(k8s[("ConfigMap", "streamon-config")]["data"]["config.yaml"])
    return path


def test_k8s_manifests_pass_strict_validation(k8svalidate: Path) -> None:
    proc = _run(k8svalidate, K8S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ServiceMonitor" in proc.stdout and "Deployment" in proc.stdout


def _mutated(tmp_path: Path, name: str, old: str, new: str, file: str = "worker.yaml") -> Path:
    d = tmp_path / name
    shutil.copytree(K8S, d)
    text = (d / file).read_text()
    assert old in text, f"{name}: {old!r} not in {file}"
    (d / file).write_text(text.replace(old, new, 1))
    return d


def test_k8s_validator_rejects_broken_manifests(k8svalidate: Path, tmp_path: Path) -> None:
    cases = {
        "unknown-field": (
            "      terminationGracePeriodSeconds: 60\n",
            "      terminationGracePeriodSeconds: 60\n      terminationGracePeriod: 60\n",
            'unknown field "spec.template.spec.terminationGracePeriod"',
        ),
        "wrong-type": ("  replicas: 3\n", "  replicas: three\n", "spec.replicas of type int32"),
        "duplicate-key": ("  replicas: 3\n", "  replicas: 3\n  replicas: 4\n", 'key "replicas" already set'),
        "probe-port": (
            "              path: /readyz\n              port: metrics",
            "              path: /readyz\n              port: metric",
            'readinessProbe: port "metric" is not a named port',
        ),
        "selector": (
            "      app.kubernetes.io/component: worker\n  strategy",
            "      app.kubernetes.io/component: workers\n  strategy",
            "does not match spec.template.metadata.labels",
        ),
        "service-port": (
            "      targetPort: metrics",
            "      targetPort: http",
            'targetPort "http" is not a container port',
        ),
        "namespace": (
            "  name: streamon-worker\n",
            "  name: streamon-worker\n  namespace: prod\n",
            "namespace-agnostic",
        ),
        "resources": (
            "              memory: 1Gi",
            "              memory: 3Gi",
            "memory request 3Gi exceeds its limit 2Gi",
        ),
    }
    for name, (old, new, expect) in cases.items():
        proc = _run(k8svalidate, _mutated(tmp_path, name, old, new))
        assert proc.returncode == 1, f"{name}: accepted\n{proc.stdout}"
        assert expect in proc.stdout, f"{name}: {proc.stdout}"
    monitor = _mutated(
        tmp_path, "monitor-port", "    - port: metrics", "    - port: http", "servicemonitor.yaml"
    )
    proc = _run(k8svalidate, monitor)
    assert proc.returncode == 1 and 'endpoints[0].port "http" is not a port name' in proc.stdout, proc.stdout


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _k8s_argv(container: dict[str, Any]) -> list[str]:
    env = {e["name"]: e for e in container.get("env", [])}
    argv = []
    for arg in container["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in env, f"$({var}) is not an env var of the container"
            arg = arg.replace(f"$({var})", "streamon-worker-7d4b9c-x2x9q")
        argv.append(arg)
    return argv


def test_k8s_statefulset_variant_in_the_docs_is_valid(k8svalidate: Path, tmp_path: Path) -> None:
    """docs/deployment.md's StatefulSet alternative validates with the other manifests."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind: StatefulSet" in b]
    for name in ("configmap.yaml", "worker.yaml"):
        shutil.copy(K8S / name, tmp_path / name)
    (tmp_path / "statefulset.yaml").write_text(block)
    proc = _run(k8svalidate, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sts = yaml.safe_load(block)
    assert sts["spec"]["serviceName"] == "streamon-worker"
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    params = _check_streamon_command(_k8s_argv(container), "docs StatefulSet")
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[str(params["state_dir"])] in claims, "the state dir must be on the persistent volume"


def test_k8s_worker_deployment(k8s: dict[tuple[str, str], dict[str, Any]], k8s_config_file: Path) -> None:
    from streamon.config import load_config

    settings = load_config(k8s_config_file)
    deployment = k8s[("Deployment", "streamon-worker")]
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    # replicas <= input partitions, and the manifest says so where replicas is set.
    assert 1 <= spec["replicas"] <= settings.kafka.partitions
    assert "replicas <= the partition count" in (K8S / "worker.yaml").read_text()
    container = _container(deployment)
    argv = _k8s_argv(container)
    params = _check_streamon_command(argv, "k8s worker")
    assert argv[0] == "worker"
    # The instance id is the pod name (downward API), unique per replica.
    env = {e["name"]: e for e in container["env"]}
    assert "$(POD_NAME)" in container["args"]
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert params["instance_id"] == "streamon-worker-7d4b9c-x2x9q"
    # Probes on the metrics port.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics_port = settings.monitoring.prometheus.port
    assert ports["metrics"] == metrics_port
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = container[probe]["httpGet"]
        assert http["path"] == path, probe
        assert ports.get(http["port"], http["port"]) == metrics_port, probe
    # Liveness must outlast a restore (max.poll.interval of 10 minutes).
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 600
    # Resources and security.
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Config from the ConfigMap at --config; state volume at --state-dir.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volume = volumes[mounts[os.path.dirname(CONFIG_IN_CONTAINER)]]
    assert config_volume["configMap"]["name"] == "streamon-config"
    assert {"key": "config.yaml", "path": os.path.basename(CONFIG_IN_CONTAINER)} in config_volume[
        "configMap"
    ]["items"]
    state_volume = volumes[mounts[str(params["state_dir"])]]
    assert "emptyDir" in state_volume or "persistentVolumeClaim" in state_volume
    assert pod["terminationGracePeriodSeconds"] >= 30


def test_k8s_alert_router_deployment(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = k8s[("Deployment", "streamon-alert-router")]
    assert deployment["spec"]["replicas"] == 1
    container = _container(deployment)
    params = _check_streamon_command(_k8s_argv(container), "k8s alert-router")
    assert params["alertmanager_urls"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(params["data_dir"]).startswith(STATE_DIR) and STATE_DIR in mounts
    assert os.path.dirname(CONFIG_IN_CONTAINER) in mounts


def test_k8s_configmap_config_passes_check_config_and_follows_the_example(k8s_config_file: Path) -> None:
    assert _streamon_check_config(k8s_config_file).startswith("ok:")
    embedded = yaml.safe_load(k8s_config_file.read_text())
    example = yaml.safe_load(MONITORING_CONFIG.read_text())
    for key in ("bootstrap_servers", "replication_factor"):
        embedded["kafka"].pop(key)
        example["kafka"].pop(key)
    assert embedded == example, (
        "deploy/k8s/configmap.yaml no longer embeds configs/monitoring_config.yaml: "
        "run `python3 deploy/tools/gen_k8s_configmap.py`"
    )


def test_k8s_service_servicemonitor_and_pdb_select_the_workers(
    k8s: dict[tuple[str, str], dict[str, Any]], k8s_config_file: Path
) -> None:
    deployment = k8s[("Deployment", "streamon-worker")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = k8s[("Service", "streamon-worker")]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["clusterIP"] == "None", "headless: Prometheus scrapes every pod"
    assert service["spec"]["publishNotReadyAddresses"] is True, "restoring (not ready) workers stay scraped"
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"

    monitor = k8s[("ServiceMonitor", "streamon-worker")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    # job = the value of the Service label named by jobLabel = the job the rules select.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == STREAMON_JOB

    pdb = k8s[("PodDisruptionBudget", "streamon-worker")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


# Prometheus' kubernetes_sd_configs: its keys, and the meta-label prefixes each role attaches
# (https://prometheus.io/docs/prometheus/latest/configuration/configuration/#kubernetes_sd_config).
K8S_SD_KEYS = {
    "api_server", "role", "kubeconfig_file", "namespaces", "selectors", "attach_metadata",
    "basic_auth", "authorization", "oauth2", "proxy_url", "no_proxy", "proxy_from_environment",
    "proxy_connect_header", "tls_config", "follow_redirects", "enable_http2",
}  # fmt: skip
K8S_SD_META = {
    "endpointslice": ("namespace", "endpointslice_", "service_", "pod_", "node_"),
    "endpoints": ("namespace", "endpoints_", "endpoint_", "service_", "pod_", "node_"),
    "pod": ("namespace", "pod_", "node_"),
    "service": ("namespace", "service_"),
}


def test_k8s_plain_prometheus_scrape_config(
    k8s: dict[tuple[str, str], dict[str, Any]], promtool: str, tmp_path: Path
) -> None:
    snippet = yaml.safe_load(k8s[("ConfigMap", "streamon-prometheus-scrape")]["data"]["streamon-scrape.yml"])
    (job,) = snippet["scrape_configs"]
    assert job["job_name"] == STREAMON_JOB
    (sd,) = job["kubernetes_sd_configs"]
    assert set(sd) <= K8S_SD_KEYS, f"unknown kubernetes_sd_configs keys {set(sd) - K8S_SD_KEYS}"
    assert sd["role"] in K8S_SD_META
    for rule in job["relabel_configs"]:
        for label in rule.get("source_labels", []):
            if label.startswith("__meta_"):
                assert label.startswith(tuple(f"__meta_kubernetes_{p}" for p in K8S_SD_META[sd["role"]])), (
                    f"role {sd['role']} does not attach {label}"
                )
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    service = k8s[("Service", "streamon-worker")]
    assert re.fullmatch(keep["regex"], f"{service['metadata']['name']};{service['spec']['ports'][0]['name']}")
    assert keep["source_labels"] == [
        "__meta_kubernetes_service_name",
        f"__meta_kubernetes_{sd['role']}_port_name",
    ]
    # promtool on a full config made of this job. Debian's promtool is built without Kubernetes
    # discovery, so the discovery block (checked above) is swapped for a static target; the
    # rest (relabelling regexes, actions, labels, intervals) is promtool's to judge.
    checked = {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
    checked["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
    full = {"global": {"scrape_interval": "30s"}, "scrape_configs": [checked]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(full))
    proc = _run(promtool, "check", "config", tmp_path / "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_k8s_and_compose_run_the_same_image_layout(
    compose: dict[str, Any], k8s: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """Both mount the config at /etc/streamon/config.yaml and keep state under /var/lib/streamon."""
    k8s_worker = _parse_streamon_argv(_k8s_argv(_container(k8s[("Deployment", "streamon-worker")])))
    compose_worker = _parse_streamon_argv(_worker_argv(compose["services"]["worker"]))
    for key in ("config_path", "state_dir"):
        assert k8s_worker[key] == compose_worker[key]


# ------------------------------------------------------------------ KEDA autoscaling

SCALED_OBJECT_FILE = "worker-scaledobject.yaml"


def _scaled_object(k8s: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return k8s[("ScaledObject", "streamon-worker")]


def _input_partitions(k8s_config_file: Path) -> int:
    """kafka.partitions of the ConfigMap's config, which must agree with the example config."""
    from streamon.config import load_config

    partitions = load_config(k8s_config_file).kafka.partitions
    assert partitions == load_config(MONITORING_CONFIG).kafka.partitions
    return partitions


def test_k8s_scaled_object_passes_strict_validation_with_the_partition_cap(
    k8svalidate: Path, k8s_config_file: Path
) -> None:
    partitions = _input_partitions(k8s_config_file)
    proc = _run(k8svalidate, "-partitions", str(partitions), K8S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 ScaledObject" in proc.stdout


def test_k8s_validator_rejects_broken_scaled_objects(
    k8svalidate: Path, k8s_config_file: Path, tmp_path: Path
) -> None:
    partitions = _input_partitions(k8s_config_file)
    cases = {
        "unknown-field": (
            "  pollingInterval: 30",
            "  pollingInterval: 30\n  pollInterval: 30",
            'unknown field "spec.pollInterval"',
        ),
        "unknown-behavior-field": (
            "          stabilizationWindowSeconds: 300\n",
            "          stabilizationWindowSeconds: 300\n          stabilisationWindowSeconds: 300\n",
            'unknown field "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.'
            'stabilisationWindowSeconds"',
        ),
        "wrong-type": ("  minReplicaCount: 3\n", "  minReplicaCount: three\n", "minReplicaCount"),
        "above-partitions": (
            f"  maxReplicaCount: {partitions}\n",
            f"  maxReplicaCount: {partitions + 1}\n",
            f"spec.maxReplicaCount {partitions + 1} exceeds the input partition count {partitions}",
        ),
        "no-max": (f"  maxReplicaCount: {partitions}\n", "", "spec.maxReplicaCount is not set"),
        "min-above-max": (
            "  minReplicaCount: 3\n",
            f"  minReplicaCount: {partitions + 1}\n",
            f"spec.minReplicaCount {partitions + 1} exceeds spec.maxReplicaCount {partitions}",
        ),
        "idle-not-below-min": (
            "  minReplicaCount: 3\n",
            "  minReplicaCount: 3\n  idleReplicaCount: 3\n",
            "spec.idleReplicaCount 3 must be below spec.minReplicaCount 3",
        ),
        "no-consumer-group": (
            "        consumerGroup: streamon\n",
            "",
            "consumerGroup (or consumerGroupFromEnv) is required",
        ),
        "misspelt-metadata": (
            '        lagThreshold: "100000"\n',
            '        lagThreshhold: "100000"\n',
            'unknown key "lagThreshhold" of the kafka scaler',
        ),
        "bad-lag-threshold": (
            'lagThreshold: "100000"',
            'lagThreshold: "100k"',
            'lagThreshold "100k" is not a positive integer',
        ),
        "bad-reset-policy": (
            "offsetResetPolicy: earliest",
            "offsetResetPolicy: beginning",
            'offsetResetPolicy "beginning" is not earliest or latest',
        ),
        "bad-bool": (
            'allowIdleConsumers: "false"',
            'allowIdleConsumers: "no"',
            'allowIdleConsumers "no" is not a boolean',
        ),
        "target": (
            "    kind: Deployment\n    name: streamon-worker\n",
            "    kind: Deployment\n    name: streamon-workers\n",
            'Deployment "streamon-workers" is not among the manifests',
        ),
        "target-kind": (
            "    kind: Deployment\n    name: streamon-worker\n",
            "    kind: StatefulSet\n    name: streamon-worker\n",
            'StatefulSet "streamon-worker" is not among the manifests',
        ),
        "missing-auth": (
            "      # authenticationRef:\n      #   name: streamon-kafka\n",
            "      authenticationRef:\n        name: streamon-kafka\n",
            'TriggerAuthentication "streamon-kafka" is not among the manifests',
        ),
        "bad-policy": (
            "              periodSeconds: 600",
            "              periodSeconds: 3600",
            "periodSeconds in 1..1800",
        ),
    }
    for name, (old, new, expect) in cases.items():
        d = _mutated(tmp_path, name, old, new, SCALED_OBJECT_FILE)
        proc = _run(k8svalidate, "-partitions", str(partitions), d)
        assert proc.returncode == 1, f"{name}: accepted\n{proc.stdout}"
        assert expect in proc.stdout, f"{name}: {proc.stdout}"
    # A second HPA on the same Deployment would fight the one KEDA makes.
    d = tmp_path / "second-hpa"
    shutil.copytree(K8S, d)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "streamon-worker"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "streamon-worker"},
            "minReplicas": 1,
            "maxReplicas": partitions,
        },
    }
    (d / "hpa.yaml").write_text(yaml.safe_dump(hpa))
    proc = _run(k8svalidate, d)
    assert proc.returncode == 1 and 'Deployment "streamon-worker" is also scaled by' in proc.stdout, (
        proc.stdout
    )


def _with_trigger_authentication() -> str:
    """worker-scaledobject.yaml with its commented TriggerAuthentication and reference enabled."""
    text = (K8S / SCALED_OBJECT_FILE).read_text()
    ref = "      # authenticationRef:\n      #   name: streamon-kafka\n"
    assert ref in text
    text = text.replace(ref, "      authenticationRef:\n        name: streamon-kafka\n")
    head, sep, tail = text.partition("# ---\n")
    assert sep, "the TriggerAuthentication block starts with '# ---'"
    lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in tail.splitlines()]
    # Comments after a value stay comments in YAML; only the leading '# ' is removed.
    return head + "---\n" + "\n".join(lines) + "\n"


def test_k8s_scaled_object_sasl_variant_is_valid(
    k8svalidate: Path, k8s_config_file: Path, tmp_path: Path
) -> None:
    partitions = _input_partitions(k8s_config_file)
    for name in ("configmap.yaml", "worker.yaml"):
        shutil.copy(K8S / name, tmp_path / name)
    (tmp_path / SCALED_OBJECT_FILE).write_text(_with_trigger_authentication())
    proc = _run(k8svalidate, "-partitions", str(partitions), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 TriggerAuthentication" in proc.stdout and "1 ScaledObject" in proc.stdout
    docs = {d["kind"]: d for d in _yaml_docs(tmp_path / SCALED_OBJECT_FILE)}
    params = {r["parameter"] for r in docs["TriggerAuthentication"]["spec"]["secretTargetRef"]}
    assert {"sasl", "username", "password"} <= params
    # A parameter the kafka scaler does not have is refused.
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("configmap.yaml", "worker.yaml"):
        shutil.copy(K8S / name, bad / name)
    (bad / SCALED_OBJECT_FILE).write_text(
        _with_trigger_authentication().replace("parameter: username", "parameter: user")
    )
    proc = _run(k8svalidate, bad)
    assert (
        proc.returncode == 1 and 'parameter "user" is not a parameter of the kafka scaler' in proc.stdout
    ), proc.stdout


def test_k8s_scaled_object_scales_the_statefulset_variant_of_the_docs(
    k8svalidate: Path, k8s_config_file: Path, tmp_path: Path
) -> None:
    """With the StatefulSet of docs/deployment.md, the ScaledObject targets it by kind."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind: StatefulSet" in b]
    shutil.copy(K8S / "configmap.yaml", tmp_path / "configmap.yaml")
    # The Service and PDB of worker.yaml, without its Deployment.
    worker_docs = [d for d in _yaml_docs(K8S / "worker.yaml") if d["kind"] != "Deployment"]
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump_all(worker_docs, sort_keys=False))
    (tmp_path / "statefulset.yaml").write_text(block)
    so = (K8S / SCALED_OBJECT_FILE).read_text()
    old = "    kind: Deployment\n    name: streamon-worker\n"
    assert old in so
    (tmp_path / SCALED_OBJECT_FILE).write_text(
        so.replace(old, "    kind: StatefulSet\n    name: streamon-worker\n")
    )
    proc = _run(k8svalidate, "-partitions", str(_input_partitions(k8s_config_file)), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 ScaledObject" in proc.stdout and "1 StatefulSet" in proc.stdout


def test_k8s_scaled_object_matches_the_config_and_the_workers(
    k8s: dict[tuple[str, str], dict[str, Any]], k8s_config_file: Path
) -> None:
    from streamon.config import load_config

    settings = load_config(k8s_config_file)
    so = _scaled_object(k8s)
    spec = so["spec"]
    # Scales the worker workload: the one whose pods are static members (--instance-id).
    ref = spec["scaleTargetRef"]
    workload = k8s[(ref.get("kind", "Deployment"), ref["name"])]
    assert workload is k8s[("Deployment", "streamon-worker")]
    argv = _k8s_argv(_container(workload))
    assert argv[0] == "worker" and "--instance-id" in argv
    # Bounds: the cap is the input partition count, in the config and in the manifest's comment.
    partitions = _input_partitions(k8s_config_file)
    assert spec["maxReplicaCount"] == partitions
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["minReplicaCount"] <= workload["spec"]["replicas"] <= spec["maxReplicaCount"]
    assert "idleReplicaCount" not in spec, "stage 2 runs in the workers: never scale to zero"
    text = (K8S / SCALED_OBJECT_FILE).read_text()
    assert f"= kafka.partitions ({partitions})" in text
    # The trigger reads the stage-1 group's lag on the predictions topic.
    (trigger,) = spec["triggers"]
    meta = trigger["type"], trigger["metadata"]
    assert meta[0] == "kafka"
    m = meta[1]
    assert m["consumerGroup"] == settings.kafka.group_id
    assert m["topic"] == settings.kafka.topics.predictions
    assert m["bootstrapServers"] == settings.kafka.bootstrap_servers
    assert m["offsetResetPolicy"] == "earliest"
    assert m["allowIdleConsumers"] == "false"
    # lagThreshold above the lag the commit cadence alone leaves (a batch per partition).
    assert int(m["lagThreshold"]) > settings.kafka.batch_size * partitions
    # One pod per step, the next step only after a restore could have finished
    # (max.poll.interval of 10 minutes); scale-down slower still.
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    for direction, min_period in (("scaleUp", 600), ("scaleDown", 600)):
        rules = behavior[direction]
        assert rules["policies"] == [
            {"type": "Pods", "value": 1, "periodSeconds": rules["policies"][0]["periodSeconds"]}
        ]
        assert rules["policies"][0]["periodSeconds"] >= min_period, direction
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] > 0
    assert (
        behavior["scaleDown"]["stabilizationWindowSeconds"]
        >= behavior["scaleUp"]["stabilizationWindowSeconds"]
    )


# ------------------------------------------------------------------ KEDA's own CRD schemas

# KEDA's CRDs, vendored unchanged from the kedacore/keda/v2 Go module (see crds/keda/README.md).
KEDA_CRDS = Path(__file__).resolve().parent / "crds" / "keda"

# The CEL rules (x-kubernetes-validations) of those CRDs, by the path of the object they sit on,
# translated by hand: jsonschema cannot run CEL. A refreshed CRD with a rule missing here fails
# test_k8s_keda_crd_rules_are_all_translated instead of going unchecked.
KEDA_CEL_RULES: dict[tuple[str, str, str], Any] = {
    (
        "ScaledObject",
        "spec",
        "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount)"
        " ? self.maxReplicaCount : 100)",
    ): lambda spec: (
        "minReplicaCount" not in spec or spec["minReplicaCount"] <= spec.get("maxReplicaCount", 100)
    ),
}


def _strict_schema(node: Any) -> Any:
    """The schema with unknown fields refused, as the API server's strict field validation does
    (kubectl apply's default): structural schemas would otherwise prune them silently."""
    if isinstance(node, list):
        return [_strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict_schema(v) for k, v in node.items()}
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _cel_rules(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(property path, rule) of every x-kubernetes-validations rule in an openAPIV3Schema."""
    found = [(path, v["rule"]) for v in schema.get("x-kubernetes-validations", [])]
    for name, sub in schema.get("properties", {}).items():
        found += _cel_rules(sub, (*path, name))
    if "items" in schema:
        found += [(("[]", *p), r) for p, r in _cel_rules(schema["items"], path)]
    return found


def _keda_crd(kind: str) -> tuple[dict[str, Any], str]:
    """(openAPIV3Schema, served version) of the vendored CRD of a keda.sh kind."""
    (crd,) = [
        d
        for p in sorted(KEDA_CRDS.glob("*.yaml"))
        for d in _yaml_docs(p)
        if d.get("kind") == "CustomResourceDefinition" and d["spec"]["names"]["kind"] == kind
    ]
    assert crd["spec"]["group"] == "keda.sh"
    (version,) = [v for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema, version["name"]


def _keda_schema_errors(doc: dict[str, Any]) -> list[str]:
    """What the API server would refuse in a keda.sh document (schema, strict fields, CEL rules)."""
    schema, version = _keda_crd(doc["kind"])
    errors = []
    if doc["apiVersion"] != f"keda.sh/{version}":
        errors.append(f"apiVersion {doc['apiVersion']} is not the served keda.sh/{version}")
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    strict = _strict_schema(schema)
    validator_cls.check_schema(strict)
    errors += [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator_cls(strict).iter_errors(doc)
    ]
    if errors:
        return errors  # CEL rules see only objects of the schema's types (as in the API server)
    for path, rule in _cel_rules(schema):
        node: Any = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and not KEDA_CEL_RULES[(doc["kind"], ".".join(path), rule)](node):
            errors.append(f"{'.'.join(path)}: CEL rule failed: {rule}")
    return errors


def test_k8s_keda_crds_are_vendored_unchanged() -> None:
    sums = dict(line.split()[::-1] for line in (KEDA_CRDS / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {p.name for p in KEDA_CRDS.glob("*.yaml")}
    for name, digest in sums.items():
        assert hashlib.sha256((KEDA_CRDS / name).read_bytes()).hexdigest() == digest, name


def test_k8s_keda_crd_rules_are_all_translated() -> None:
    for kind in ("ScaledObject", "TriggerAuthentication"):
        schema, _ = _keda_crd(kind)
        for path, rule in _cel_rules(schema):
            assert (kind, ".".join(path), rule) in KEDA_CEL_RULES, f"untranslated CEL rule of {kind}: {rule}"
    assert _cel_rules(_keda_crd("ScaledObject")[0]), "the ScaledObject CRD has its min <= max rule"


def test_k8s_keda_objects_match_keda_crd_schemas() -> None:
    """The shipped ScaledObject, and the TriggerAuthentication once uncommented, are what KEDA's
    own CRDs accept; mutations they refuse are refused here too."""
    scaled_object = _yaml_docs(K8S / SCALED_OBJECT_FILE)
    assert [d["kind"] for d in scaled_object] == ["ScaledObject"]
    sasl = _yaml_docs_from_text(_with_trigger_authentication())
    assert sorted(d["kind"] for d in sasl) == ["ScaledObject", "TriggerAuthentication"]
    for doc in [*scaled_object, *sasl]:
        assert _keda_schema_errors(doc) == [], doc["kind"]

    so = scaled_object[0]
    auth = next(d for d in sasl if d["kind"] == "TriggerAuthentication")

    def mutated(doc: dict[str, Any], change: Any) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        change(doc)
        return doc

    cases: dict[str, tuple[dict[str, Any], str]] = {
        "unknown-field": (mutated(so, lambda d: d["spec"].update(pollInterval=30)), "pollInterval"),
        "wrong-type": (mutated(so, lambda d: d["spec"].update(minReplicaCount="three")), "'three'"),
        "metadata-not-string": (
            mutated(so, lambda d: d["spec"]["triggers"][0]["metadata"].update(lagThreshold=100000)),
            "100000 is not of type 'string'",
        ),
        "no-trigger-type": (mutated(so, lambda d: d["spec"]["triggers"][0].pop("type")), "'type'"),
        "no-triggers": (mutated(so, lambda d: d["spec"].update(triggers=[])), "spec.triggers"),
        "min-above-max": (
            mutated(so, lambda d: d["spec"].update(minReplicaCount=d["spec"]["maxReplicaCount"] + 1)),
            "CEL rule failed",
        ),
        "empty-target": (mutated(so, lambda d: d["spec"]["scaleTargetRef"].update(name="")), "name"),
        "other-version": (mutated(so, lambda d: d.update(apiVersion="keda.sh/v1beta1")), "apiVersion"),
        "auth-no-key": (mutated(auth, lambda d: d["spec"]["secretTargetRef"][0].pop("key")), "'key'"),
        "auth-unknown-field": (
            mutated(auth, lambda d: d["spec"]["secretTargetRef"][0].update(secret="x")),
            "secret",
        ),
    }
    for name, (doc, expect) in cases.items():
        errors = _keda_schema_errors(doc)
        assert errors, f"{name}: KEDA's CRD schema accepted it"
        assert any(expect in e for e in errors), f"{name}: {errors}"


def _yaml_docs_from_text(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_k8s_scaling_docs_state_the_scaled_objects_values(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    """docs/scaling.md's table of the ScaledObject says what the manifest holds."""
    spec = _scaled_object(k8s)["spec"]
    text = (ROOT / "docs" / "scaling.md").read_text()
    section = text.split("## Autoscaling with KEDA", 1)[1].split("\n## ", 1)[0]
    rows = {
        cells[0]: cells[1]
        for line in section.splitlines()
        if line.startswith("| ") and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 3
    }
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert rows["`minReplicaCount`"].startswith(f"{spec['minReplicaCount']} ")
    assert rows["`maxReplicaCount`"] == f"{spec['maxReplicaCount']} = `kafka.partitions`"
    assert rows["`lagThreshold`"].startswith(f'`"{meta["lagThreshold"]}"`')
    assert rows["`offsetResetPolicy`"] == f"`{meta['offsetResetPolicy']}`"
    assert ("cooldownPeriod" in spec) == (rows["`cooldownPeriod`"] != "not set")
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    for row, direction, where in (("scale up", "scaleUp", "above"), ("scale down", "scaleDown", "below")):
        rules = behavior[direction]
        (policy,) = rules["policies"]
        window, period = rules["stabilizationWindowSeconds"], policy["periodSeconds"]
        assert window % 60 == 0 and period % 60 == 0, direction
        expected = (
            f"after {window // 60} minutes {where} target, {policy['value']} pod per {period // 60} minutes"
        )
        assert rows[row] == expected, direction
