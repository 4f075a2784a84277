#!/usr/bin/env python3
"""Run a real single-node Apache Kafka 4.x broker (KRaft) without Docker.

    python deploy/kafka/broker.py start [--port N] [--state-dir DIR]   # prints the bootstrap address
    python deploy/kafka/broker.py start --sasl-ssl   # adds a SASL_SSL listener (SCRAM + PLAIN, TLS)
    python deploy/kafka/broker.py status [--state-dir DIR]
    python deploy/kafka/broker.py stop [--state-dir DIR]
    python deploy/kafka/broker.py stop --keep-data      # graceful (SIGTERM), data kept
    python deploy/kafka/broker.py crash                 # SIGKILL, data kept
    python deploy/kafka/broker.py start --keep-data     # back on the kept data, same port
    python deploy/kafka/broker.py restart               # stop --keep-data, then start --keep-data

The broker jars are resolved from Maven Central once (Java 17 + Maven) and cached in
~/.cache/streamon/kafka-<version>/ (override with STREAMON_KAFKA_CACHE). Data lives in
a temporary directory that ``stop`` deletes. A second ``start`` while a broker runs
from the same state directory prints the running broker's address and does nothing
else. Standard library only, so it runs before streamon itself is installed.

For fault tests a broker can be brought down and back: ``stop --keep-data`` and ``crash``
leave the data directory and the state file in place, and ``start --keep-data`` (or
``restart``) runs the broker again on the same data, cluster id, client and controller
ports, so clients reconnect to the address they had. Without kept data, ``start
--keep-data`` starts a new broker; a plain ``start`` over kept data deletes it first.

``--sasl-ssl`` adds a second client listener speaking SASL over TLS, for trying and testing
authenticated clients: at start a throw-away CA and a server certificate for 127.0.0.1 /
localhost are made with the ``openssl`` command, and the user ``streamon`` is created with a
random password for SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN. The PLAINTEXT listener stays (the
controller and the test suite use it). ``start`` and ``status`` print the SASL_SSL address,
the CA file and the password file; all of them live in the data directory that ``stop`` deletes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
KAFKA_VERSION = "4.1.1"  # keep in step with pom.xml
DEFAULT_STATE_DIR = Path(tempfile.gettempdir()) / "streamon-kafka"
READY_TIMEOUT_S = 90.0
SASL_USER = "streamon"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


# Broker settings for tests that kill and revive brokers (``start(properties=...)``). After
# a SIGKILL the restarted broker cannot register until the old registration's session ends
# (9 s by default); timed-out transactions of killed producers are aborted every 10 s.
FAST_RECOVERY = {
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "2000",
}


class BrokerError(Exception):
    """A problem the user can fix; printed as one line, exit code 1."""


@dataclass
class BrokerInfo:
    pid: int
    port: int
    controller_port: int
    data_dir: str
    log_file: str
    started_s: float  # seconds from launch to readiness
    # Only with --sasl-ssl (defaults keep state files of plain brokers readable).
    sasl_ssl_port: int | None = None
    ca_file: str | None = None
    sasl_user: str | None = None
    password_file: str | None = None
    cluster_id: str | None = None  # kept so a restart on the same data can be checked

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.sasl_ssl_port}" if self.sasl_ssl_port else None

    def security_lines(self) -> list[str]:
        """What a client needs for the SASL_SSL listener (the password stays in its file)."""
        if not self.sasl_ssl_port:
            return []
        return [
            f"sasl_ssl {self.sasl_ssl_bootstrap}",
            f"ca_file {self.ca_file}",
            f"user {self.sasl_user} (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)",
            f"password_file {self.password_file}",
        ]


# --------------------------------------------------------------------------- tools


def java_executable() -> str:
    """Path of a Java >= 17 runtime, or BrokerError saying how to get one."""
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise BrokerError(
            "Java 17 or newer was not found (no JAVA_HOME, no java on PATH): "
            "install a JDK 17, e.g. `apt-get install openjdk-17-jdk-headless`, then retry"
        )
    out = subprocess.run([candidate, "-version"], capture_output=True, text=True).stderr
    major = _java_major(out)
    if major is not None and major < 17:
        raise BrokerError(
            f"Java {major} found at {candidate}, but the Kafka 4 broker needs Java 17 or newer: "
            "install a JDK 17 and set JAVA_HOME to it"
        )
    return candidate


def _java_major(version_output: str) -> int | None:
    for token in version_output.replace('"', " ").split():
        if token[:1].isdigit():
            head = token.split(".")[0]
            if head == "1":  # 1.8.0_x style
                return int(token.split(".")[1])
            try:
                return int(head)
            except ValueError:
                return None
    return None


def cache_dir() -> Path:
    root = os.environ.get("STREAMON_KAFKA_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "streamon"
    return base / f"kafka-{KAFKA_VERSION}"


def ensure_jars() -> Path:
    """Resolve the broker's runtime jars once; later calls return the cached folder."""
    libs = cache_dir() / "libs"
    marker = cache_dir() / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError(
            "Maven (mvn) was not found on PATH; it fetches the Kafka broker jars once: "
            "install it, e.g. `apt-get install maven`, then retry"
        )
    cache_dir().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=cache_dir()))
    # A fresh folder each time: two Kafka versions must never share a classpath.
    proc = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["(no output)"]
        raise BrokerError(f"Maven could not fetch the Kafka broker jars: {tail[0]}")
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    marker.write_text(KAFKA_VERSION + "\n")
    return libs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------- state


def _state_file(state_dir: Path) -> Path:
    return state_dir / "broker.json"


def read_state(state_dir: Path) -> BrokerInfo | None:
    try:
        return BrokerInfo(**json.loads(_state_file(state_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running(state_dir: Path) -> BrokerInfo | None:
    info = read_state(state_dir)
    if info and pid_alive(info.pid) and port_open(info.port):
        return info
    return None


def kept(state_dir: Path) -> BrokerInfo | None:
    """The stopped broker whose data ``stop --keep-data`` or ``crash`` left, if any."""
    info = read_state(state_dir)
    if info is None or pid_alive(info.pid):
        return None
    props = Path(info.data_dir) / "server.properties"
    meta = Path(info.data_dir) / "logs" / "meta.properties"
    return info if props.exists() and meta.exists() else None


# --------------------------------------------------------------------------- start / stop


def make_certificates(out_dir: Path) -> tuple[Path, Path, str]:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost, made with openssl.

    Returns (CA certificate, broker key store, key password). The key store is PEM (Kafka's
    ``ssl.keystore.type=PEM``): the encrypted private key followed by the certificate chain.
    """
    openssl = shutil.which("openssl")
    if not openssl:
        raise BrokerError(
            "openssl was not found on PATH; --sasl-ssl makes the broker's certificates with it: "
            "install it, e.g. `apt-get install openssl`, then retry"
        )
    key_password = secrets.token_urlsafe(18)
    ca, ca_key = out_dir / "ca.pem", out_dir / "ca.key"
    key, csr, cert = out_dir / "server.key", out_dir / "server.csr", out_dir / "server.pem"
    ext, p8 = out_dir / "server.ext", out_dir / "server.p8"
    ext.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # fast to generate
    ca_subject = ["-subj", "/CN=streamon development CA", "-addext", "basicConstraints=critical,CA:TRUE"]
    days = ["-days", "30"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, *days, *ca_subject],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            *days,
            "-extfile",
            ext,
            "-out",
            cert,
        ],
        # Kafka's PEM key store wants an encrypted PKCS#8 key and its password.
        [
            openssl,
            "pkcs8",
            "-topk8",
            "-in",
            key,
            "-out",
            p8,
            # PBES1: Java 17's PEM reader has no PBES2 (AES) key factory.
            "-v1",
            "PBE-SHA1-3DES",
            "-passout",
            f"pass:{key_password}",
        ],
    ]
    for step in steps:
        proc = subprocess.run([str(a) for a in step], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(f"openssl could not make the broker certificate: {_last_line(proc.stderr)}")
    keystore = out_dir / "server.keystore.pem"
    keystore.write_text(p8.read_text() + cert.read_text() + ca.read_text())
    for leftover in (key, csr, ext, p8, ca_key, out_dir / "ca.srl"):
        leftover.unlink(missing_ok=True)
    keystore.chmod(0o600)
    return ca, keystore, key_password


def sasl_ssl_properties(keystore: Path, key_password: str, user: str, password: str) -> dict[str, str]:
    """The SASL_SSL listener: TLS with the PEM key store; SCRAM users live in the metadata log
    (added at format time), PLAIN users in the listener's JAAS configuration."""
    name = "listener.name.sasl_ssl"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}="{password}";'
    return {
        f"{name}.ssl.keystore.type": "PEM",
        f"{name}.ssl.keystore.location": str(keystore),
        f"{name}.ssl.key.password": key_password,
        f"{name}.sasl.enabled.mechanisms": ",".join((*SCRAM_MECHANISMS, "PLAIN")),
        f"{name}.scram-sha-256.sasl.jaas.config": scram,
        f"{name}.scram-sha-512.sasl.jaas.config": scram,
        f"{name}.plain.sasl.jaas.config": plain,
    }


def server_properties(
    port: int,
    controller_port: int,
    data_dir: Path,
    sasl_ssl: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """``sasl_ssl``: the extra listener's properties; it must hold ``"port"``.
    ``extra``: broker settings that override the defaults below (fault tests use it)."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir / "logs"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # The defaults (50 partitions each) make the first group / transaction slow.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The default reserves 128 MB of heap for compaction.
        "log.cleaner.dedupe.buffer.size": "33554432",
        "auto.create.topics.enable": "false",
    }
    if sasl_ssl:
        listener = dict(sasl_ssl)
        sasl_port = listener.pop("port")
        props["listeners"] += f",SASL_SSL://127.0.0.1:{sasl_port}"
        props["advertised.listeners"] += f",SASL_SSL://127.0.0.1:{sasl_port}"
        props["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
        props.update(listener)
    props.update(extra or {})
    return "".join(f"{k}={v}\n" for k, v in props.items())


def start(
    state_dir: Path = DEFAULT_STATE_DIR,
    port: int | None = None,
    heap: str = "512m",
    sasl_ssl: bool = False,
    keep_data: bool = False,
    properties: dict[str, str] | None = None,
) -> BrokerInfo:
    """Start a broker (or return the one already running from ``state_dir``).

    ``sasl_ssl`` adds the SASL_SSL listener (see the module docstring). ``keep_data`` brings
    back the broker that ``stop(keep_data=True)`` or ``crash`` left, on its data, cluster id
    and ports (a new broker when none was left). ``properties`` override broker settings of
    a new broker; a kept broker keeps the settings it was made with.
    """
    existing = running(state_dir)
    if existing:
        if sasl_ssl and not existing.sasl_ssl_port:
            raise BrokerError(
                f"a broker without the SASL_SSL listener already runs from {state_dir}: "
                "stop it first, or use another --state-dir"
            )
        return existing
    java = java_executable()
    libs = ensure_jars()
    previous = kept(state_dir)
    if previous and keep_data:
        return _resume(state_dir, previous, port, heap, sasl_ssl, java, libs)
    stale = read_state(state_dir)
    if stale and not pid_alive(stale.pid):
        # A plain start makes a new broker: the data a stopped broker left would only leak.
        shutil.rmtree(stale.data_dir, ignore_errors=True)
        _state_file(state_dir).unlink(missing_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=state_dir))
    port = port or free_port()
    taken = {port}
    controller_port = free_port()
    while controller_port in taken:
        controller_port = free_port()
    taken.add(controller_port)
    security: dict[str, str] | None = None
    scram_args: list[str] = []
    secured = BrokerInfo(0, port, controller_port, str(data_dir), "", 0.0)  # the SASL_SSL fields
    if sasl_ssl:
        sasl_port = free_port()
        while sasl_port in taken:
            sasl_port = free_port()
        try:
            ca, keystore, key_password = make_certificates(data_dir)
        except BrokerError:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
        password = secrets.token_urlsafe(18)
        password_file = data_dir / f"{SASL_USER}.password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        security = {
            "port": str(sasl_port),
            **sasl_ssl_properties(keystore, key_password, SASL_USER, password),
        }
        for mechanism in SCRAM_MECHANISMS:
            scram_args += ["--add-scram", f"{mechanism}=[name={SASL_USER},password={password}]"]
        secured.sasl_ssl_port, secured.ca_file = sasl_port, str(ca)
        secured.sasl_user, secured.password_file = SASL_USER, str(password_file)
    props_file = data_dir / "server.properties"
    props_file.write_text(server_properties(port, controller_port, data_dir, security, properties))
    if security:
        props_file.chmod(0o600)  # it holds the key and PLAIN passwords
    jvm = _jvm(java, libs, heap)
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    fmt = subprocess.run(
        [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            # One argument: a random id may start with "-", which would read as an option.
            f"--cluster-id={cluster_id}",
            "-c",
            str(props_file),
            "--ignore-formatted",
            *scram_args,
        ],
        capture_output=True,
        text=True,
    )
    if fmt.returncode != 0:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise BrokerError(f"Kafka storage format failed: {_last_line(fmt.stdout + fmt.stderr)}")
    info = BrokerInfo(
        pid=0,
        port=port,
        controller_port=controller_port,
        data_dir=str(data_dir),
        log_file=str(data_dir / "broker.log"),
        started_s=0.0,
        sasl_ssl_port=secured.sasl_ssl_port,
        ca_file=secured.ca_file,
        sasl_user=secured.sasl_user,
        password_file=secured.password_file,
        cluster_id=cluster_id,
    )
    return _launch(state_dir, info, jvm, delete_on_failure=True)


def _jvm(java: str, libs: Path, heap: str) -> list[str]:
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        f"{libs}/*",
    ]


def _resume(
    state_dir: Path,
    info: BrokerInfo,
    port: int | None,
    heap: str,
    sasl_ssl: bool,
    java: str,
    libs: Path,
) -> BrokerInfo:
    """Run the kept broker again: same data directory (so the same cluster id) and ports."""
    if port and port != info.port:
        raise BrokerError(
            f"the kept broker in {state_dir} listens on port {info.port}, not {port}: "
            "drop --port, or `stop` it (deleting its data) first"
        )
    if sasl_ssl and not info.sasl_ssl_port:
        raise BrokerError(
            f"the kept broker in {state_dir} has no SASL_SSL listener: "
            "`stop` it (deleting its data) and start a new one with --sasl-ssl"
        )
    busy = [p for p in (info.port, info.controller_port, info.sasl_ssl_port) if p and port_open(p)]
    if busy:
        raise BrokerError(
            f"port {busy[0]} of the kept broker in {state_dir} is taken by another process: "
            "free it and retry, or `stop` the kept broker (deleting its data)"
        )
    meta = Path(info.data_dir) / "logs" / "meta.properties"
    ids = [
        line.split("=", 1)[1].strip()
        for line in meta.read_text().splitlines()
        if line.startswith("cluster.id=")
    ]
    info.cluster_id = ids[0] if ids else info.cluster_id
    return _launch(state_dir, info, _jvm(java, libs, heap), delete_on_failure=False)


def _launch(state_dir: Path, info: BrokerInfo, jvm: list[str], delete_on_failure: bool) -> BrokerInfo:
    """Run the formatted broker of ``info`` and wait until its client port answers."""
    props_file = Path(info.data_dir) / "server.properties"
    log_file = Path(info.log_file)
    t0 = time.monotonic()
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(props_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    info.pid, info.started_s = proc.pid, 0.0
    _state_file(state_dir).write_text(json.dumps(info.__dict__))
    # Since Kafka 3.5 the client port opens only once the broker is ready.
    deadline = t0 + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if port_open(info.port) and (not info.sasl_ssl_port or port_open(info.sasl_ssl_port)):
            info.started_s = round(time.monotonic() - t0, 2)
            _state_file(state_dir).write_text(json.dumps(info.__dict__))
            return info
        time.sleep(0.1)
    reason = "exited" if proc.poll() is not None else f"not ready after {READY_TIMEOUT_S:.0f}s"
    last = _last_line(log_file.read_text(errors="replace"))
    # A broker made now is deleted; kept data stays for another try.
    stop(state_dir, keep_data=not delete_on_failure)
    raise BrokerError(f"Kafka broker {reason}; last log line: {last}")


def stop(state_dir: Path = DEFAULT_STATE_DIR, timeout_s: float = 30.0, keep_data: bool = False) -> bool:
    """Stop the broker started from ``state_dir`` (controlled shutdown, SIGKILL after
    ``timeout_s``) and delete its data unless ``keep_data``. True if one ran."""
    info = read_state(state_dir)
    if info is None:
        return False
    was_running = pid_alive(info.pid)
    if was_running:
        try:
            os.kill(info.pid, signal.SIGTERM)  # controlled shutdown
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(info.pid):
            _reap(info.pid)
            time.sleep(0.1)
        if pid_alive(info.pid):
            os.kill(info.pid, signal.SIGKILL)
        _wait_gone(info.pid)
    if not keep_data:
        shutil.rmtree(info.data_dir, ignore_errors=True)
        _state_file(state_dir).unlink(missing_ok=True)
    return was_running


def crash(state_dir: Path = DEFAULT_STATE_DIR) -> bool:
    """SIGKILL the broker started from ``state_dir``, keeping its data (as a machine failure
    would); ``start(keep_data=True)`` brings it back. True if one ran."""
    info = read_state(state_dir)
    if info is None or not pid_alive(info.pid):
        return False
    try:
        os.kill(info.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _wait_gone(info.pid)
    return True


def restart(state_dir: Path = DEFAULT_STATE_DIR, heap: str = "512m", graceful: bool = True) -> BrokerInfo:
    """Stop the broker (SIGTERM, or SIGKILL when not ``graceful``) keeping its data, then
    start it again on the same data and ports. A broker already down is just started."""
    if read_state(state_dir) is None:
        raise BrokerError(f"no broker was started from {state_dir}: use `start`")
    if graceful:
        stop(state_dir, keep_data=True)
    else:
        crash(state_dir)
    return start(state_dir, heap=heap, keep_data=True)


def _wait_gone(pid: int, timeout_s: float = 30.0) -> None:
    """Until the process is gone (reaped when it is our child), so its ports are free."""
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(empty)"


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "fetch", "crash", "restart"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where the broker's pid, port and data live (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    parser.add_argument("--heap", default="512m", help="JVM heap, e.g. 512m or 1g")
    parser.add_argument(
        "--sasl-ssl",
        action="store_true",
        help="also listen for SASL_SSL clients (TLS + SCRAM-SHA-256/512 and PLAIN, user streamon)",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="stop: keep the data for a later start; start: run the kept broker again (same data and ports)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(ensure_jars())
        elif args.command in ("start", "restart"):
            if args.command == "start":
                info = start(
                    args.state_dir, args.port, args.heap, sasl_ssl=args.sasl_ssl, keep_data=args.keep_data
                )
            else:
                info = restart(args.state_dir, args.heap)
            print(info.bootstrap)
            for line in info.security_lines():
                print(line)
            print(
                f"kafka {KAFKA_VERSION} ready in {info.started_s}s (pid {info.pid}, log {info.log_file})",
                file=sys.stderr,
            )
        elif args.command == "stop":
            print("stopped" if stop(args.state_dir, keep_data=args.keep_data) else "no broker was running")
        elif args.command == "crash":
            print("killed" if crash(args.state_dir) else "no broker was running")
        else:
            current = running(args.state_dir)
            if not current:
                print("not running")
                if kept(args.state_dir):
                    print(
                        f"data kept in {args.state_dir}: `start --keep-data` brings it back", file=sys.stderr
                    )
                return 3
            print(current.bootstrap)
            for line in current.security_lines():
                print(line)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
