#!/usr/bin/env bash
# The one-shot GPU check: every measurement the lab needs from a GPU, in one command that fits
# in 10 minutes on one H100/H200-class GPU and writes everything under one output folder.
#
#     scripts/gpu_check.sh OUT_DIR            # from the repository root, jaxlab installed
#
# Steps (each bounded by its own time limit; a failed or timed-out step is recorded in
# OUT_DIR/status.tsv and the next one runs):
#   env            device, driver, JAX / jaxlib / Python versions           env.txt
#   kernel_tests   tests/kernels on the device (Pallas compiled, not interpreted; the
#                  interpret-mode cases run as well)                          kernel_tests.log
#   bench_kernels  flash / softplus attention and the scans against cuDNN, XLA attention and
#                  associative_scan, TF/s and fractions of the measured ceilings
#                                                                            kernels.json
#   bench_mfu      scripts/bench_train.py --mfu on the 350m preset (batch 8 x 2048, bf16)
#                                                                            mfu.json
#   bench_sample   SmolLM2-135M-Instruct greedy decoding, batch 1 and 16 (needs the model in
#                  the cache: `jaxlab models fetch smollm2-135m-instruct`; skipped otherwise)
#                                                                            sample.md / .json
#   sft_smollm2    SmolLM2 SFT throughput: experiments/smollm2_finetune.py --preset sft;
#                  tokens/s from its metrics                                  sft/, sft_tokens_per_s.txt
# Copy OUT_DIR's files to results/gpu/<device>/ and the figures into the README.
set -uo pipefail
OUT="${1:?usage: scripts/gpu_check.sh OUT_DIR}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
: >"$OUT/status.tsv"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: runs COMMAND with a time limit, logs to OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%ss\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$OUT/status.tsv"
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$PY" -c 'import sys, jax, jaxlib; print("python", sys.version.split()[0]); print("jax", jax.__version__, "jaxlib", jaxlib.__version__); print(jax.devices())'
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step kernel_tests 150 "$PY" -m pytest -q -p no:cacheprovider -p no:xdist tests/kernels
step bench_kernels 150 "$PY" scripts/bench_kernels.py --out "$OUT/kernels.json"
step bench_mfu 120 "$PY" scripts/bench_train.py --mfu --out "$OUT/mfu.json"
if "$PY" -m jaxlab models path smollm2-135m-instruct >/dev/null 2>&1; then
  step bench_sample 60 "$PY" scripts/bench_sample.py --out "$OUT/sample.md"
  step sft_smollm2 90 "$PY" -m jaxlab run experiments/smollm2_finetune.py --preset sft \
    --workdir "$OUT/sft" --no-progress
  "$PY" - "$OUT" <<'EOF' >"$OUT/sft_tokens_per_s.txt" 2>&1
import json, sys
from pathlib import Path
records = [json.loads(line) for p in Path(sys.argv[1], "sft").rglob("metrics.jsonl") for line in open(p)]
values = [r["train/tokens_per_s"] for r in records if "train/tokens_per_s" in r][1:]  # first: compile
print(f"SmolLM2 SFT tokens/s (mean over {len(values)} logged steps after the first): "
      f"{sum(values) / max(len(values), 1):.0f}")
EOF
else
  printf 'bench_sample\tskipped\tSmolLM2 is not in the model cache\n' | tee -a "$OUT/status.tsv"
  printf 'sft_smollm2\tskipped\tSmolLM2 is not in the model cache\n' | tee -a "$OUT/status.tsv"
fi
cat "$OUT/status.tsv"
! grep -qP '\t[1-9][0-9]*\t' "$OUT/status.tsv"
