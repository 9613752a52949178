"""``jaxlab eval MODEL [--task NAME] [--text FILE] ...``: a thin wrapper over
:func:`jaxlab.evals.evaluate_task` and :func:`jaxlab.evals.text_bits_per_byte` that writes
``results.json``, ``completions.jsonl``, ``report.md`` and ``eval.png`` into ``--out``.

With the multi-process options (``--coordinator``, ``--num-processes``, ``--process-id``, as
``jaxlab run``), every process loads the model, generates its share of the batches, and
process 0 writes what one process would have written."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jaxlab eval",
        description="Evaluate a model on a verifiable task (greedy accuracy, pass@k, maj@k with 95% "
                    "intervals, per difficulty) and/or bits per byte of a text file.")
    p.add_argument("model", help="a model name, a .gguf file, a Hugging Face folder or a jaxlab workdir")
    p.add_argument("--task", help="a task of jaxlab.tasks (countdown, arithmetic, hanoi, count, ...)")
    p.add_argument("--n", type=int, default=100, help="problems (default 100)")
    p.add_argument("--samples", type=int, default=8,
                   help="sampled completions per problem for pass@k and maj@k; 0 = greedy only (default 8)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="problem and sampling seed (default 0)")
    p.add_argument("--split", choices=("test", "ood", "all"), default="all",
                   help="test: the task's training difficulties, ood: its harder range, all: half each")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="generation budget (default: 2 x the longest reference answer + 16 tokens)")
    p.add_argument("--batch-size", type=int, default=32, help="rows per generation batch (default 32)")
    chat = p.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=None,
                      help="prompt through the chat template (default when the tokenizer has one)")
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="plain task prompts")
    p.add_argument("--text", help="a UTF-8 text file: also report perplexity and bits per byte")
    p.add_argument("--window", type=int, default=1024, help="tokens per window for --text (default 1024)")
    p.add_argument("--stride", type=int, default=None, help="window stride for --text (default window/2)")
    p.add_argument("--out", help="output folder (default runs/eval/<model>/<task or text>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from jaxlab.train import distributed

    distributed.add_arguments(p)  # each process generates its share of the problems' batches
    return p


def _default_out(model: str, label: str) -> Path:
    stem = Path(model.rstrip("/")).name
    stem = re.sub(r"\.gguf$", "", stem) or "model"
    return Path("runs") / "eval" / stem / label


def eval_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.task is None and args.text is None:
        print("error: give --task NAME and/or --text FILE", file=sys.stderr)
        return 2
    for name in ("n", "batch_size", "window"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.samples < 0:
        print("error: --samples must be >= 0", file=sys.stderr)
        return 2
    text = None
    if args.text is not None:
        path = Path(args.text)
        if not path.is_file():
            print(f"error: --text {path} is not a file", file=sys.stderr)
            return 2
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            print(f"error: --text {path} is not UTF-8: {e}", file=sys.stderr)
            return 2
        if not text:
            print(f"error: --text {path} is empty", file=sys.stderr)
            return 2

    import jax

    from jaxlab.train import distributed

    try:
        distributed.initialize_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from jaxlab import tasks as tasks_lib
    from jaxlab.evals.harness import evaluate_task, evaluation_problems
    from jaxlab.evals.report import render_report, write_results
    from jaxlab.evals.text import text_bits_per_byte

    if args.task is not None:
        try:  # drawing the problems is cheap: fail here, before loading the model
            evaluation_problems(tasks_lib.get(args.task), args.n, split=args.split, seed=args.seed)
        except tasks_lib.TaskError as e:  # an unknown task, more problems than its levels hold
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        from jaxlab.interop.models import load_model
    except ImportError as e:
        print(f"error: loading models needs jaxlab.interop.models ({e})", file=sys.stderr)
        return 1
    try:
        cfg, params, tokenizer = load_model(args.model)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: cannot load model {args.model!r}: {e}", file=sys.stderr)
        return 1

    results = {"model": args.model, "command": shlex.join(["jaxlab", "eval", *argv]),
               "task_results": None, "text": None}
    if args.task is not None:
        results["task_results"] = evaluate_task(
            cfg, params, tokenizer, args.task, n=args.n, samples=args.samples,
            key=jax.random.PRNGKey(args.seed), temperature=args.temperature,
            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, split=args.split,
            seed=args.seed, chat=args.chat, progress=not args.no_progress, across_processes=True)
    if text is not None:
        results["text"] = {"file": str(args.text), **text_bits_per_byte(
            cfg, params, tokenizer, text, window=args.window, stride=args.stride,
            progress=not args.no_progress)}
    if jax.process_index() != 0:  # every process holds the same results; process 0 writes them
        return 0
    out = Path(args.out) if args.out else _default_out(args.model, args.task or "text")
    paths = write_results(results, out)
    print(render_report(results))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
