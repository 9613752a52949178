#!/usr/bin/env bash
# The claims whose paper preset needs a GPU: one `jaxlab run ... --preset paper --seeds 3 --publish`
# line per experiment, each writing its run under the output folder $1 (and publishing to
# results/<experiment>/paper/). Run from the repository root: scripts/gpu_claims.sh /path/to/out
# Expected GPU time (one H200, estimates from step and generation counts) is in each experiment's docstring.
set -euo pipefail
OUT="${1:?usage: scripts/gpu_claims.sh OUTPUT_FOLDER}"
mkdir -p "$OUT"

jaxlab run experiments/dft_vs_sft.py --workdir "$OUT/dft_vs_sft" --preset paper --seeds 3 --publish
jaxlab run experiments/sft_memorizes_rl_generalizes.py --workdir "$OUT/sft_memorizes_rl_generalizes" --preset paper --seeds 3 --publish
jaxlab run experiments/genrm_verifier.py --workdir "$OUT/genrm_verifier" --preset paper --seeds 3 --publish
jaxlab run experiments/reflect_retry_reward.py --workdir "$OUT/reflect_retry_reward" --preset paper --seeds 3 --publish
jaxlab run experiments/softplus_length_extrapolation.py --workdir "$OUT/softplus_length_extrapolation" --preset paper --seeds 3 --publish
jaxlab run experiments/extraction_rl.py --workdir "$OUT/extraction_rl" --preset paper --seeds 3 --publish
jaxlab run experiments/tina_lora_rl.py --workdir "$OUT/tina_lora_rl" --preset paper --seeds 3 --publish
