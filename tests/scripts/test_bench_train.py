"""scripts/bench_train.py --quick runs end to end: every requested row is present, without
errors, and both sides start from the same loss (no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_train.py"


@pytest.mark.slow
def test_quick_run_has_every_row(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--models", "quickstart",
                           "--variants", "jaxlab,torch_eager", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["variant"]: r["result"] for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"jaxlab", "torch_eager"}
    assert not any("error" in r for r in rows.values())
    assert rows["jaxlab"]["loss_first"] == pytest.approx(rows["torch_eager"]["loss_first"], rel=1e-3)
