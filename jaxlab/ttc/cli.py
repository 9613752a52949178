"""``jaxlab ttc MODEL --task T --methods greedy,bon,vote,deepconf --budget N ...``: a thin wrapper
over :func:`jaxlab.ttc.harness.run_methods` that writes ``results.json``, ``samples.jsonl``,
``table.md`` and ``accuracy_vs_tokens.png`` into ``--out``."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from jaxlab.ttc.harness import METHODS

    p = argparse.ArgumentParser(
        prog="jaxlab ttc",
        description="Test-time compute methods on one set of samples: accuracy (95%% intervals) against "
                    "tokens generated and wall time. Methods: " + ", ".join(METHODS) + ".")
    p.add_argument("model", help="a model name, a .gguf file, a Hugging Face folder or a jaxlab workdir")
    p.add_argument("--task", required=True, help="a task of jaxlab.tasks (instructed_arithmetic, card_sum, ...)")
    p.add_argument("--methods", default="greedy,bon,vote,deepconf",
                   help="comma-separated methods (default greedy,bon,vote,deepconf)")
    p.add_argument("--budget", type=int, default=8, help="samples per problem N (default 8)")
    p.add_argument("--n", type=int, default=50, help="problems (default 50)")
    p.add_argument("--difficulty", help="LOW,HIGH: the task's difficulty range (default: its training range)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="tokens per completion (default 48)")
    p.add_argument("--top-logprobs", type=int, default=20, help="k of the token confidence (default 20)")
    p.add_argument("--window", type=int, default=16, help="DeepConf group window in tokens (default 16)")
    p.add_argument("--keep", type=float, default=0.5, help="DeepConf offline: fraction of traces kept (default 0.5)")
    p.add_argument("--warmup", type=int, default=None, help="DeepConf online: warm-up traces (default budget/2)")
    p.add_argument("--stop-keep", type=float, default=0.9,
                   help="DeepConf online: the threshold keeps this fraction of warm-up traces (default 0.9)")
    p.add_argument("--inter-points", type=int, default=4,
                   help="inter: the first sampled trace is cut at j/J of its length, j < J (default J = 4)")
    p.add_argument("--verifier", help="bon-rm: a GenRM verifier (a model spec, or tiny-random) whose p(\"Yes\") scores the samples")
    p.add_argument("--verifier-seq-len", type=int, default=512,
                   help="bon-rm: tokens of a verification row (problem + solution + question; default 512)")
    p.add_argument("--batch-size", type=int, default=64, help="rows per generation batch (default 64)")
    p.add_argument("--seed", type=int, default=0, help="problem and sampling seed (default 0)")
    p.add_argument("--out", help="output folder (default runs/ttc/<model>/<task>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def ttc_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from jaxlab import tasks as tasks_lib
    from jaxlab.ttc import harness

    try:
        methods = harness.check_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    except ValueError as e:
        print(f"error: --methods: {e}", file=sys.stderr)
        return 2
    for name in ("n", "budget", "max_new_tokens", "batch_size", "window", "top_logprobs"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.inter_points < 2:
        print("error: --inter-points must be >= 2", file=sys.stderr)
        return 2
    if not (0 < args.keep <= 1 and 0 < args.stop_keep <= 1):
        print("error: --keep and --stop-keep must be in (0, 1]", file=sys.stderr)
        return 2
    warmup = args.budget // 2 if args.warmup is None else args.warmup
    if "deepconf-online" in methods and not 1 <= warmup < args.budget:
        print(f"error: --warmup must be in [1, budget - 1] = [1, {args.budget - 1}] for deepconf-online "
              f"(got {warmup})", file=sys.stderr)
        return 2
    if ("bon-rm" in methods) != (args.verifier is not None):
        print("error: --methods bon-rm needs --verifier MODEL, and --verifier is only read by bon-rm", file=sys.stderr)
        return 2
    difficulty = None
    if args.difficulty is not None:
        m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", args.difficulty)
        if not m:
            print(f"error: --difficulty must be LOW,HIGH (two integers), got {args.difficulty!r}", file=sys.stderr)
            return 2
        difficulty = (int(m.group(1)), int(m.group(2)))
    try:  # drawing the problems is cheap: fail here, before loading the model
        task, examples = harness.task_problems(args.task, args.n, seed=args.seed, difficulty=difficulty)
    except tasks_lib.TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        scorer = None
        if args.verifier is not None:
            from jaxlab.interop.models import load_experiment_model
            from jaxlab.ttc.scorers import genrm_scorer

            v_cfg, v_params, v_tok = load_experiment_model(args.verifier, args.seed)
            scorer = genrm_scorer(v_params, v_cfg, v_tok, seq_len=args.verifier_seq_len)
        results = harness.run_task(
            args.model, args.task, n=args.n, seed=args.seed, difficulty=difficulty, methods=methods,
            budget=args.budget, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
            top_logprobs=args.top_logprobs, window=args.window, keep=args.keep, warmup=warmup,
            stop_keep=args.stop_keep, inter_points=args.inter_points, batch_size=args.batch_size,
            progress=not args.no_progress, scorer=scorer)
    except (ValueError, FileNotFoundError, OSError) as e:  # a model that cannot be loaded, among others
        print(f"error: {args.model!r}: {e}", file=sys.stderr)
        return 1
    results = {"command": shlex.join(["jaxlab", "ttc", *argv]), **results}
    stem = re.sub(r"\.gguf$", "", Path(args.model.rstrip("/")).name) or "model"
    out = Path(args.out) if args.out else Path("runs") / "ttc" / stem / task.name
    paths = harness.write_results(results, out, title=f"{args.model} on {task.name}, {len(examples)} problems")
    print(harness.markdown_table(results))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
