"""scripts/gpu_check.sh's harness, with a stand-in Python that records each call: every step
runs in order with its output under the output folder, a failing step is recorded and the
next ones still run, and the script's exit status says whether any step failed."""

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _fake_python(tmp_path: Path, fail_on: str | None, has_model: bool) -> Path:
    fake = tmp_path / "python"
    fail = f'case "$*" in *{fail_on}*) exit 3;; esac' if fail_on else ""
    model = "" if has_model else 'case "$*" in *"models path"*) exit 1;; esac'
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> "{tmp_path}/calls"\n{fail}\n{model}\n'
                    'case "$*" in -*" - "*|"- "*) cat >/dev/null;; esac\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def _run(tmp_path, fail_on=None, has_model=True):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(_fake_python(tmp_path, fail_on, has_model))}
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    rows = [line.split("\t") for line in (out / "status.tsv").read_text().splitlines()]
    return proc.returncode, {r[0]: r[1] for r in rows}, (tmp_path / "calls").read_text()


def test_every_step_runs_and_the_script_succeeds(tmp_path):
    rc, status, calls = _run(tmp_path)
    assert rc == 0
    assert list(status) == ["kernel_tests", "bench_kernels", "bench_mfu", "bench_sample", "sft_smollm2"]
    assert set(status.values()) == {"0"}
    assert "tests/kernels" in calls and "--mfu" in calls and "--preset sft" in calls


def test_a_failed_step_is_recorded_and_the_rest_still_run(tmp_path):
    rc, status, _ = _run(tmp_path, fail_on="bench_kernels.py")
    assert rc != 0
    assert status["bench_kernels"] == "3" and status["bench_mfu"] == "0" and status["sft_smollm2"] == "0"


def test_smollm2_steps_are_skipped_without_the_model(tmp_path):
    rc, status, calls = _run(tmp_path, has_model=False)
    assert rc == 0 and status["bench_sample"] == "skipped" and "bench_sample.py" not in calls
