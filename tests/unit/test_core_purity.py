"""streamon.core is pure: importing any of it pulls in neither Kafka nor Prometheus client code.

Checked in a fresh interpreter (this test process may already have imported both).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import streamon.core

FORBIDDEN = ("confluent_kafka", "prometheus_client")

PROBE = """
import json, pkgutil, importlib, sys
import streamon.core
names = sorted(m.name for m in pkgutil.walk_packages(streamon.core.__path__, "streamon.core."))
for name in names:
    importlib.import_module(name)
forbidden = {FORBIDDEN!r}
leaked = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
# Control: the detector does see a forbidden module once it is imported.
importlib.import_module("prometheus_client")
control = any(m.split(".")[0] == "prometheus_client" for m in sys.modules)
print(json.dumps({{"modules": names, "leaked": leaked, "control": control}}))
"""


def test_core_imports_neither_kafka_nor_prometheus() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(FORBIDDEN=FORBIDDEN)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    on_disk = sorted(
        "streamon.core." + ".".join(p.relative_to(streamon.core.__path__[0]).with_suffix("").parts)
        for p in Path(streamon.core.__path__[0]).rglob("*.py")
        if p.stem != "__init__"
    )
    assert set(on_disk) <= set(result["modules"]), "every module file was imported"
    assert len(result["modules"]) >= 15
    assert result["leaked"] == [], f"streamon.core imported {result['leaked']}"
    assert result["control"] is True
