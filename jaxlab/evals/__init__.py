"""Evaluation harness: verifiable tasks (greedy accuracy, pass@k, maj@k with intervals, per
difficulty) and perplexity / bits per byte of a text, as library functions and ``jaxlab eval``.

    results = evaluate_task(cfg, params, tokenizer, "countdown", n=500, samples=8, key=key)
    bpb = text_bits_per_byte(cfg, params, tokenizer, text, window=1024)["bits_per_byte"]
    write_results({"model": name, "task_results": results, "text": bpb_dict}, out_dir)

Modules: :mod:`~jaxlab.evals.generation` (prompts, batched completions),
:mod:`~jaxlab.evals.scoring` (verification, majority votes, summaries; no model),
:mod:`~jaxlab.evals.harness` (problems and ``evaluate_task``), :mod:`~jaxlab.evals.text`
(bits per byte), :mod:`~jaxlab.evals.report` (results.json, report.md, eval.png),
:mod:`~jaxlab.evals.cli` (``jaxlab eval``). Statistics live in :mod:`jaxlab.stats`.
"""

from jaxlab.evals.generation import complete, encode_task_prompt
from jaxlab.evals.harness import evaluate_task, evaluation_problems
from jaxlab.evals.report import write_results
from jaxlab.evals.scoring import majority_vote, score_problem, summarize, summarize_records
from jaxlab.evals.text import text_bits_per_byte

__all__ = ["complete", "encode_task_prompt", "evaluate_task", "evaluation_problems", "majority_vote",
           "score_problem", "summarize", "summarize_records", "text_bits_per_byte", "write_results"]
