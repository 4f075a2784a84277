"""The complete output of a replay (every series, alert event, bad line and join count) of
a stream with invalid events, duplicates, corrections, orphans, variants and segments is
what it was before the hot path was rewritten for speed (tests/data/output_stability.py).

Every line's text and every integer must match exactly. Floating-point values may differ
in the last few units in the last place and nowhere else: the golden file outlives the
numpy/scipy release it was written with, and those change the rounding of their sums
(pairwise vs SIMD order) between versions. A real change to a result moves it far more.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path

from tests.data.output_stability import EXPECTED, output

# A float as Python and orjson print it (with a point or an exponent; integers excluded).
_FLOAT = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?|-?\d+e[-+]?\d+")
REL_TOL = 1e-13  # ~450 ulps: differences of summation order, not of method


def _skeleton(line: str) -> tuple[str, list[float]]:
    return _FLOAT.sub("<f>", line), [float(x) for x in _FLOAT.findall(line)]


def _same(expected: str, got: str) -> bool:
    (e_text, e_vals), (g_text, g_vals) = _skeleton(expected), _skeleton(got)
    return e_text == g_text and all(
        math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-300) for a, b in zip(e_vals, g_vals, strict=True)
    )


def test_replay_output_is_unchanged(tmp_path: Path) -> None:
    expected = EXPECTED.read_text().splitlines()
    got = output(tmp_path).splitlines()
    diff = list(difflib.unified_diff(expected, got, "expected", "now", lineterm="", n=0))
    if len(expected) == len(got) and all(_same(e, g) for e, g in zip(expected, got, strict=True)):
        return
    assert not diff, "\n".join(diff[:60])


def test_the_comparison_tolerates_rounding_only() -> None:
    line = 'ml_model_auc_roc{model="m",window="current"} 0.7605466820562692'
    assert _same(line, line.replace("0.7605466820562692", "0.760546682056305"))
    assert not _same(line, line.replace("0.7605466820562692", "0.7605466820572692"))  # 1.3e-12 relative
    assert not _same(line, line.replace("0.7605466820562692", "0.7606"))
    assert not _same(line, line.replace('window="current"', 'window="reference"'))
    assert not _same("join: {'joined': 5381}", "join: {'joined': 5382}")
