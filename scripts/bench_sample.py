"""Greedy decoding speed: jaxlab's KV-cache sampler next to transformers' ``generate``, or
next to jaxlab's own speculative decoding.

    python scripts/bench_sample.py [--random] [--batch-sizes 1,16] [--prompt-len 64]
                                   [--new-tokens 128] [--repeats 2] [--out FILE.md]
    python scripts/bench_sample.py --speculative DRAFT [--gamma 4] [--batch-sizes 1,8] ...

Speculative mode (``--speculative``): the same target decodes greedily with
:func:`jaxlab.samplers.generate` (plain) and with
:func:`jaxlab.samplers.speculative.speculative_generate` (draft ``DRAFT``: a folder written by
:func:`jaxlab.samplers.draft.save_draft`, e.g. by ``experiments/speculative_svip.py``, or
``pruned:K``, the target pruned to K layers by angular distance and not trained, or ``lookup``:
prompt lookup, n-gram copying from the context, no model). Prompts are
``doc_extract`` problems through the chat template (random tokens with ``--random``/``--tiny``),
rows stop at the tokenizer's end-of-turn token; tokens/s counts emitted tokens. Before timing,
every verification shape (0..gamma draft tokens) is compiled (``speculative.warm_up``).

    ratio = speculative tokens/s / plain tokens/s       (same prompts, same run)

with the tokens per target call and the share of rows whose output is identical to plain greedy.
Without ``--speculative``:

Both sides run the same weights in float32 on the CPU: SmolLM2-135M-Instruct dequantized from
its GGUF file (jaxlab: ``load_model("smollm2-135m-instruct")``; transformers:
``AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)``), or with ``--random`` a
random model of the same shape (``--tiny``: a tiny one, for tests) written as a Hugging Face
folder that transformers loads. For each batch size B every row gets the same random prompt of
``--prompt-len`` tokens and exactly ``--new-tokens`` greedy tokens (no stop token). Torch uses
``--torch-threads`` intra-op threads (default: one per core).

    tokens/s = B * new_tokens / wall seconds of one whole generate call (prefill included)

Each side is warmed up with one full call first (jaxlab's compilation and torch's first-call
work are excluded from the timed region); the best of ``--repeats`` timed calls is reported,
ratio = jaxlab tokens/s / transformers tokens/s. ``agree`` is the share of generated tokens
equal on both sides (float32 on both, so greedy paths agree until a near-tie flips).
Prints a markdown table and one JSON line; ``--out FILE`` writes the table to FILE and the JSON
to FILE with a .json suffix. Benchmarks report, they never assert a speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig, generate
from jaxlab.train.mfu import cpu_model

MODEL_NAME = "smollm2-135m-instruct"
# SmolLM2-135M's architecture (what its GGUF metadata gives)
SMOLLM2 = transformer.Config(vocab_size=49152, d_model=576, n_layers=30, n_heads=9, n_kv_heads=3,
                             head_dim=64, mlp_dim=1536, norm_eps=1e-5, rope_base=100000.0,
                             tie_embeddings=True)
TINY = transformer.Config(vocab_size=96, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                          head_dim=8, mlp_dim=64, norm_eps=1e-5, tie_embeddings=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--random", action="store_true",
                   help="a random model of SmolLM2-135M's shape instead of the cached GGUF")
    p.add_argument("--tiny", action="store_true", help="a tiny random model (tests)")
    p.add_argument("--batch-sizes", default="1,16", help="comma-separated batch sizes (default 1,16)")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2, help="timed calls per side; the best is kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch intra-op threads (0 = torch's default, one per core); on a shared, "
                        "loaded CPU torch's spinning thread pool slows down far more than XLA's")
    p.add_argument("--out", help="write the markdown table here and the JSON beside it (.json)")
    p.add_argument("--speculative", metavar="DRAFT",
                   help="compare plain greedy decoding with speculative decoding from this draft (a "
                        "save_draft folder, or pruned:K)")
    p.add_argument("--gamma", type=int, default=4, help="draft tokens per round (speculative mode)")
    p.add_argument("--task-seed", type=int, default=300, help="doc_extract problems' seed (speculative mode)")
    return p


def _positive_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise SystemExit(f"{what} must be integers >= 1, got {text!r}")
    return values


def load_models(args, folder: Path):
    """(model name, jaxlab cfg, params, a transformers model on the same weights)."""
    from transformers import AutoModelForCausalLM

    if args.random or args.tiny:
        from jaxlab.interop import hf

        cfg = TINY if args.tiny else SMOLLM2
        params = transformer.init(cfg, jax.random.PRNGKey(args.seed))
        hf.save(folder, cfg, params, architecture="LlamaForCausalLM")
        torch_model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
        name = "random " + ("tiny" if args.tiny else "SmolLM2-135M-shaped") + " model"
        return name, cfg, params, torch_model
    from jaxlab.interop.models import load_model, model_path

    path = model_path(MODEL_NAME)
    if not path.is_file():
        raise SystemExit(f"{path} is missing: `make model` fetches it (or pass --random)")
    cfg, params, _ = load_model(MODEL_NAME)
    torch_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                       dtype="float32")
    return f"{MODEL_NAME} (GGUF dequantized to float32)", cfg, params, torch_model


def _best_seconds(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up: compilation and first-call work, not timed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_jaxlab(cfg, params, prompt_BT: np.ndarray, new_tokens: int, repeats: int):
    """(seconds, tokens [B, N]) of greedy generation with :func:`jaxlab.samplers.generate`."""
    sample_cfg = SampleConfig(max_new_tokens=new_tokens, temperature=0.0)
    mask_BT = np.ones_like(prompt_BT)
    key = jax.random.PRNGKey(0)

    def run():
        out = generate(params, cfg, prompt_BT, mask_BT, key, sample_cfg)
        return np.asarray(jax.block_until_ready(out.tokens))

    return _best_seconds(run, repeats)


def bench_transformers(model, prompt_BT: np.ndarray, new_tokens: int, repeats: int):
    """(seconds, tokens [B, N]) of greedy ``model.generate`` with exactly ``new_tokens`` tokens."""
    import torch

    input_ids = torch.from_numpy(prompt_BT.astype(np.int64))
    attention_mask = torch.ones_like(input_ids)

    def run():
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 pad_token_id=0, eos_token_id=None, num_beams=1)
        return out[:, prompt_BT.shape[1]:].numpy()

    return _best_seconds(run, repeats)


@dataclasses.dataclass
class Row:
    batch_size: int
    jaxlab_tokens_per_s: float
    transformers_tokens_per_s: float
    ratio: float
    agree: float


def bench_batch(cfg, params, torch_model, B: int, args) -> Row:
    """Both sides at batch size B on the same prompt (row-repeated)."""
    rng = np.random.default_rng(args.seed)
    prompt_T = rng.integers(0, cfg.vocab_size, args.prompt_len, dtype=np.int32)
    prompt_BT = np.broadcast_to(prompt_T, (B, args.prompt_len)).copy()
    print(f"batch {B}: jaxlab ...", file=sys.stderr, flush=True)
    jax_s, jax_tokens = bench_jaxlab(cfg, params, prompt_BT, args.new_tokens, args.repeats)
    print(f"batch {B}: transformers ...", file=sys.stderr, flush=True)
    torch_s, torch_tokens = bench_transformers(torch_model, prompt_BT, args.new_tokens, args.repeats)
    n = B * args.new_tokens
    return Row(batch_size=B, jaxlab_tokens_per_s=n / jax_s, transformers_tokens_per_s=n / torch_s,
               ratio=torch_s / jax_s, agree=float(np.mean(jax_tokens == torch_tokens)))


def markdown(rows: list[Row], info: dict) -> str:
    lines = [f"Greedy decoding, {info['model']}, prompt {info['prompt_len']} tokens, "
             f"{info['new_tokens']} new tokens, float32, CPU ({info['cpus']} cores, torch "
             f"{info['torch_threads']} threads), best of "
             f"{info['repeats']} calls after a warm-up call (compile time excluded).", "",
             "| batch | jaxlab tokens/s | transformers tokens/s | ratio (jaxlab / transformers) "
             "| tokens agree |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.batch_size} | {r.jaxlab_tokens_per_s:.1f} | "
                     f"{r.transformers_tokens_per_s:.1f} | {r.ratio:.2f}x | {r.agree:.0%} |")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class SpecRow:
    batch_size: int
    plain_tokens_per_s: float
    speculative_tokens_per_s: float
    ratio: float
    tokens_per_target_call: float
    identical: float


def speculative_models(args):
    """(name, target cfg, params, stop tokens, prompts source, draft cfg, draft params, draft vocab)."""
    from jaxlab.samplers import draft as draft_lib

    if args.random or args.tiny:
        cfg = TINY if args.tiny else SMOLLM2
        params = transformer.init(cfg, jax.random.PRNGKey(args.seed))
        name, stops, tokenizer = "random " + ("tiny" if args.tiny else "SmolLM2-135M-shaped") + " model", (), None
    else:
        from jaxlab.interop.models import load_model

        cfg, params, tokenizer = load_model(MODEL_NAME)
        name, stops = MODEL_NAME, tuple(tokenizer.eos_ids)

    def prompts(n: int) -> list[list[int]]:
        if tokenizer is None:
            rng = np.random.default_rng(args.seed)
            return [list(rng.integers(0, cfg.vocab_size, args.prompt_len)) for _ in range(n)]
        from jaxlab import tasks
        from jaxlab.data.chat import encode_prompt

        examples = tasks.get("doc_extract", train_difficulty=(1, 3)).splits(args.task_seed, n_train=0, n_test=n,
                                                                           n_ood=0)["test"]
        return [[int(t) for t in encode_prompt([{"role": "user", "content": e.prompt}], tokenizer)] for e in examples]

    if args.speculative == "lookup":
        from jaxlab.samplers.speculative import LookupDraft

        return name, cfg, params, stops, prompts, LookupDraft(), None, None
    if args.speculative.startswith("pruned:"):
        keep = int(args.speculative.split(":", 1)[1])
        d_cfg, d_params, _ = draft_lib.prune_draft(params, cfg, prompts(4), keep)
        vocab = None
    else:
        d_cfg, d_params, vocab = draft_lib.load_draft(args.speculative)
    return name, cfg, params, stops, prompts, d_cfg, d_params, vocab


def bench_speculative(args, batch_sizes: list[int]) -> tuple[list[SpecRow], dict]:
    from jaxlab.samplers import pad_prompts
    from jaxlab.samplers.speculative import SpeculativeConfig, speculative_generate, warm_up

    name, cfg, params, stops, prompts, d_cfg, d_params, vocab = speculative_models(args)
    spec = SpeculativeConfig(gamma=args.gamma, max_new_tokens=args.new_tokens)
    rows = []
    for B in batch_sizes:
        batch = prompts(B)
        tokens_BT, mask_BT = pad_prompts(batch, 0)
        sample_cfg = SampleConfig(max_new_tokens=args.new_tokens, temperature=0.0, stop_tokens=stops)

        def plain():
            out = generate(params, cfg, tokens_BT, mask_BT, jax.random.PRNGKey(0), sample_cfg)
            lengths = np.asarray(out.lengths)
            return [list(np.asarray(out.tokens[b, :lengths[b]])) for b in range(B)]

        def speculative():
            out = speculative_generate(params, cfg, d_params, d_cfg, batch, spec=spec, stop_tokens=stops,
                                       draft_vocab=vocab)
            return out

        print(f"batch {B}: plain ...", file=sys.stderr, flush=True)
        plain_s, plain_out = _best_seconds(plain, args.repeats)
        warm_up(params, cfg, d_params, d_cfg, B, max(len(p) for p in batch), spec=spec, draft_vocab=vocab)
        print(f"batch {B}: speculative ...", file=sys.stderr, flush=True)
        spec_s, spec_out = _best_seconds(speculative, args.repeats)
        plain_n = sum(len(r) for r in plain_out)
        spec_n = sum(len(r) for r in spec_out["tokens"])
        identical = np.mean([[int(t) for t in a] == [int(t) for t in b] for a, b in zip(spec_out["tokens"], plain_out)])
        rows.append(SpecRow(batch_size=B, plain_tokens_per_s=plain_n / plain_s, speculative_tokens_per_s=spec_n / spec_s,
                            ratio=(spec_n / spec_s) / (plain_n / plain_s),
                            tokens_per_target_call=spec_n / B / spec_out["target_calls"], identical=float(identical)))
    lookup = d_params is None
    info = {"model": name, "draft": args.speculative, "draft_layers": 0 if lookup else d_cfg.n_layers,
            "draft_head": "none" if lookup else "full" if vocab is None else f"{len(vocab)} tokens", "gamma": args.gamma,
            "new_tokens": args.new_tokens, "repeats": args.repeats, "cpus": os.cpu_count(), "jax": jax.__version__,
            "machine": platform.machine(), "processor": cpu_model(), "load_avg": os.getloadavg(),
            "timed": "best whole call after one warm-up call; compile time excluded"}
    return rows, info


def speculative_markdown(rows: list[SpecRow], info: dict) -> str:
    draft = ("prompt lookup (no model)" if info["draft_head"] == "none" else
             f"{info['draft']}: {info['draft_layers']} layers, head over {info['draft_head']}")
    lines = [f"Greedy decoding of {info['model']}, plain and speculative (draft {draft}; gamma {info['gamma']}), up to "
             f"{info['new_tokens']} new tokens, float32, CPU ({info['cpus']} cores, {info['processor']}), best of "
             f"{info['repeats']} calls after a warm-up call; load average {info['load_avg'][0]:.1f} at the end.", "",
             "| batch | plain tokens/s | speculative tokens/s | ratio (speculative / plain) | tokens per target call "
             "| identical to plain |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.batch_size} | {r.plain_tokens_per_s:.1f} | {r.speculative_tokens_per_s:.1f} | "
                     f"{r.ratio:.2f}x | {r.tokens_per_target_call:.2f} | {r.identical:.0%} |")
    return "\n".join(lines) + "\n"


def _write(table: str, result: dict, out: str | None) -> None:
    print(table)
    print(json.dumps(result))
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table)
        path.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    batch_sizes = _positive_ints(args.batch_sizes, "--batch-sizes")
    for name in ("prompt_len", "new_tokens", "repeats", "gamma"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.speculative:
        rows, info = bench_speculative(args, batch_sizes)
        _write(speculative_markdown(rows, info), {**info, "rows": [dataclasses.asdict(r) for r in rows]}, args.out)
        return 0
    import torch

    if args.torch_threads < 0:
        raise SystemExit(f"--torch-threads must be >= 0, got {args.torch_threads}")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_name, cfg, params, torch_model = load_models(args, Path(tmp))
        torch_model.eval()
        rows = [bench_batch(cfg, params, torch_model, B, args) for B in batch_sizes]
    info = {"model": model_name, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
            "repeats": args.repeats, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "jax": jax.__version__, "torch": torch.__version__, "machine": platform.machine(),
            "timed": "best whole generate call after one warm-up call; compile time excluded"}
    _write(markdown(rows, info), {**info, "rows": [dataclasses.asdict(r) for r in rows]}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
