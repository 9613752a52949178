"""scripts/bench_peft.py on a tiny random GGUF model: every mode runs in its own process and
reports its trainable parameters, memory and losses (no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import jax

from jaxlab.interop import gguf
from jaxlab.models import transformer

sys.path.insert(0, str(Path(__file__).parent.parent))
from tokenizer_fixtures import bpe_tokenizer, vocab_for  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_peft.py"


def test_three_modes_report_their_sizes(tmp_path):
    tok = bpe_tokenizer()
    cfg = transformer.Config(vocab_size=vocab_for(tok), d_model=64, n_layers=2, n_heads=2, n_kv_heads=1,
                             head_dim=32, mlp_dim=128, tie_embeddings=True)
    path = gguf.save(tmp_path / "tiny.gguf", cfg, transformer.init(cfg, jax.random.key(0)), tok, dtype="q8_0")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--gguf", str(path), "--steps", "2", "--batch", "1",
                           "--seq", "16", "--rank", "4", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"full", "lora", "qlora"}
    n_params = transformer.count_params(transformer.init(cfg, jax.random.key(0)))
    assert rows["full"]["trainable_params"] == n_params
    # rank 4 on q, k, v, o, gate, up, down of 2 layers: 4 * (n + m) each
    lora = 2 * 4 * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64) + (64 + 128) * 2 + (128 + 64))
    assert rows["lora"]["trainable_params"] == rows["qlora"]["trainable_params"] == lora
    assert all(r["peak_mb_process"] > 0 and r["loss_last"] < r["loss_first"] + 1e-3 for r in rows.values())
    assert "memory / full" in proc.stdout
