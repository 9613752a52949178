"""scripts/profile_step.py: the kinds of work of XLA operation names, and one traced step of a
tiny model whose summary adds up (no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import profile_step  # noqa: E402


def test_kinds_and_passes_of_operations():
    kinds = {name: profile_step.kind_of(name) for name in (
        "ynn_fusion.3", "dot.1", "transpose_copy_fusion.74", "copy_bitcast_fusion", "wrapped_reduce-window.2",
        "iota_reduce_fusion", "subtract_exponential_fusion.1", "multiply_add_fusion", "wrapped_slice")}
    assert kinds == {"ynn_fusion.3": "matmul", "dot.1": "matmul", "transpose_copy_fusion.74": "data movement",
                     "copy_bitcast_fusion": "data movement", "wrapped_reduce-window.2": "reduction",
                     "iota_reduce_fusion": "reduction", "subtract_exponential_fusion.1": "element-wise",
                     "multiply_add_fusion": "element-wise", "wrapped_slice": "data movement"}
    assert profile_step.pass_of("jit(train_step)/transpose(jvp())/closed_call/mul") == "backward"
    assert profile_step.pass_of("jit(train_step)/jvp()/closed_call/exp") == "forward"
    assert profile_step.pass_of("jit(train_step)/sqrt") == "optimizer & other"
    hlo = ('  %ynn_fusion.3 = f32[4,8]{1,0} fusion(%a, %b), kind=kCustom, '
           'metadata={op_name="jit(train_step)/jvp()/dot_general"}\n'
           '  ROOT %copy.1 = f32[8,4]{1,0} copy(%ynn_fusion.3)\n')
    assert profile_step.hlo_instructions(hlo) == {"ynn_fusion.3": ("f32[4,8]{1,0}", "jit(train_step)/jvp()/dot_general"),
                                                  "copy.1": ("f32[8,4]{1,0}", "")}
    events = [{"ph": "X", "name": "ynn_fusion.3", "dur": 3000}, {"ph": "X", "name": "copy.1", "dur": 1000},
              {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 9000}]
    summary = profile_step.summarize(events, profile_step.hlo_instructions(hlo), n_steps=2)
    assert summary["op_ms_per_step"] == 2.0
    assert summary["by_kind"] == {"matmul": 1.5, "data movement": 0.5}
    assert summary["by_pass"] == {"forward": 1.5, "optimizer & other": 0.5}


@pytest.mark.slow
def test_a_traced_step_of_a_tiny_model_adds_up(tmp_path):
    out = tmp_path / "profile.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "profile_step.py"), "--set", "d_model=32", "n_layers=1",
                           "n_heads=2", "n_kv_heads=2", "head_dim=16", "mlp_dim=64", "scan_unroll=1",
                           "--warmup", "1", "--steps", "1", "--trace-steps", "1", "--json", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    s = json.loads(out.read_text())
    assert s["batch"] == [16, 256] and s["model_config"]["d_model"] == 32
    assert s["by_kind"]["matmul"] > 0 and set(s["by_pass"]) >= {"forward", "backward"}
    assert sum(s["by_kind"].values()) == pytest.approx(s["op_ms_per_step"])
    assert sum(s["by_pass"].values()) == pytest.approx(s["op_ms_per_step"])
    assert any("dot_general" in row["source"] for row in s["top_ops"])
