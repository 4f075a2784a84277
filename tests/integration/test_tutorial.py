"""docs/tutorial.md, verbatim: every ```bash block in order, as one script, and its Python snippet.

The script runs in a temporary directory holding a copy of ``configs/``, with the venv's
``streamon`` and ``python`` first on PATH, as a newcomer runs it from the repository root
with the venv active. Two things differ, on purpose:

- the ONE line ``export BOOTSTRAP=$(python3 deploy/kafka/broker.py start)`` is replaced by
  ``export BOOTSTRAP=<address>`` of the session's real broker (the ``kafka_bootstrap``
  fixture): the test must not start or stop brokers of its own. No other line is changed;
  the tutorial stops its broker in prose, not in a bash block, for the same reason;
- the copied ``configs/monitoring_config.yaml`` gets topic and group names unique to this
  run, so that runs sharing one broker never read each other's events (the tutorial's
  commands and its ``send.py`` read the names from the config).

Each ```python block starts with ``# <file name>: ...`` and is saved under that name
before the script runs (the tutorial says to save it so); the script then runs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
BROKER_LINE = "export BOOTSTRAP=$(python3 deploy/kafka/broker.py start)"


def blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced ```bash and ```python block, in order."""
    return re.findall(r"^```(bash|python)\n(.*?)^```", TUTORIAL.read_text(), re.S | re.M)


def script(bootstrap: str) -> str:
    bash = "\n".join(body for lang, body in blocks() if lang == "bash")
    assert bash.count(BROKER_LINE) == 1, f"the tutorial must start its broker with: {BROKER_LINE}"
    return "set -euo pipefail\n" + bash.replace(BROKER_LINE, f"export BOOTSTRAP={bootstrap}")


def copy_configs(tmp_path: Path) -> None:
    """configs/ as in the checkout, with this run's own topic and group names."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    path = tmp_path / "configs" / "monitoring_config.yaml"
    config = yaml.safe_load(path.read_text())
    run = uuid.uuid4().hex[:8]
    k = config["kafka"]
    k["topics"] = {name: f"{value}-tutorial-{run}" for name, value in k["topics"].items()}
    k["group_id"] = f"{k['group_id']}-tutorial-{run}"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert "reference_profile: null" in path.read_text()  # what the tutorial's sed replaces


def test_the_tutorial_runs_verbatim(kafka_bootstrap: str, tmp_path: Path) -> None:
    copy_configs(tmp_path)
    for lang, body in blocks():
        if lang == "python":
            name = re.match(r"# ([\w.]+):", body)
            assert name, f"a python block must start with '# <file>: ...':\n{body[:80]}"
            (tmp_path / name.group(1)).write_text(body)
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "140"}
    proc = subprocess.Popen(
        ["bash", "-c", script(kafka_bootstrap)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the background worker too is ended below if anything hangs
    )
    try:
        out, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        log = (tmp_path / "tutorial" / "worker.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"the tutorial hung:\n{out[-4000:]}\nworker log:\n{log}") from None
    finally:
        # The background worker outlives a script that failed half-way: end the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    log_file = tmp_path / "tutorial" / "worker.log"
    log = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
    assert proc.returncode == 0, f"{out[-6000:]}\nworker log:\n{log}"
    flat = " ".join(out.split())

    # Section 1-3: the files, the profile, the replay and its drift.
    assert "wrote 12,000 predictions" in flat and "12,000 reference events" in flat
    assert "wrote tutorial/reference.profile.json (fraud-detector: 12000 predictions)" in flat
    assert re.search(r"replayed 12,000 predictions and 12,000 labels .* [1-9]\d* alerts fired", flat), flat
    psi = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'ml_data_drift_psi_score\{feature="(\w+)",model="fraud-detector",'
            r'variant="all",window="current"\} (\S+)',
            (tmp_path / "tutorial" / "metrics.prom").read_text(),
        )
    }
    assert psi["transaction_amount"] > 0.2 and psi["days_since_last_transaction"] > 0.2
    assert psi["merchant_category"] < 0.05 and psi["transaction_hour"] < 0.05
    assert '"alertname":"SevereDataDrift"' in (tmp_path / "tutorial" / "alerts.jsonl").read_text()
    report = (tmp_path / "tutorial" / "report.html").read_text()
    assert "wrote tutorial/report.html (12,000 predictions, 12,000 labels" in flat
    assert 'data-section="fraud-detector/drift"' in report and "SevereDataDrift" in report
    # Section 4 (and the report read from Kafka in section 5): a decision line each time.
    assert flat.count("recommendation: keep collecting") == 2, flat
    assert "sample size: B vs A: value/pred: the fixed-horizon test needs" in flat

    # Section 5: the worker got every event sent by send.py and exports the metrics.
    assert "sent; 0 undelivered" in flat
    processed = dict(re.findall(r'streamon_events_processed_total\{topic="([^"]+)"\} (\S+)', out))
    assert sorted(float(v) for v in processed.values()) == [12_001.0, 12_001.0], processed
    worker_psi = re.search(
        r'ml_data_drift_psi_score\{[^}]*feature="transaction_amount"[^}]*variant="all"[^}]*\} (\S+)', out
    )
    assert worker_psi and float(worker_psi.group(1)) > 0.2, out[-3000:]
    assert re.search(r'ml_model_accuracy\{[^}]*variant="all"[^}]*window="current"[^}]*\} 0\.9\d+', out)
    assert "Traceback" not in out and "Traceback" not in log


def test_the_readme_file_path_runs_verbatim(tmp_path: Path) -> None:
    """README's "Using it": its first bash block (files only, no Kafka) as a user types it."""
    section = (ROOT / "README.md").read_text().split("## Using it", 1)[1].split("\n## ", 1)[0]
    assert "docs/tutorial.md" in section
    block = re.search(r"^```bash\n(.*?)^```", section, re.S | re.M)
    assert block and "--out data" in block.group(1)
    copy_configs(tmp_path)
    venv_bin = str(Path(sys.executable).parent)
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.group(1)],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "140"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "replayed 12,000 predictions" in proc.stdout and "recommendation:" in proc.stdout
    assert (tmp_path / "metrics.prom").stat().st_size > 0 and (tmp_path / "alerts.jsonl").exists()
