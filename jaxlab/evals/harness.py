"""Evaluating a model on a verifiable task: problems, completions, scores and summaries.

    results = evaluate_task(cfg, params, tokenizer, "countdown", n=500, samples=8,
                            key=jax.random.PRNGKey(0))
    results["overall"]["greedy"]["accuracy"], results["overall"]["pass@8"], results["by_difficulty"]

Problems are the task's deterministic splits (:meth:`jaxlab.tasks.Task.splits` of ``seed``):
``split="test"`` draws n problems of the training difficulty range, ``"ood"`` n of the harder
range, ``"all"`` ceil(n/2) of the first and floor(n/2) of the second. Each problem gets one
greedy completion (temperature 0) and ``samples`` completions at ``temperature``; the
metrics are those of :mod:`jaxlab.evals.scoring`.
"""

from __future__ import annotations

import jax

from jaxlab import stats
from jaxlab import tasks as tasks_lib
from jaxlab.evals import scoring
from jaxlab.evals.generation import check_vocab, complete, encode_task_prompt, prompts_as_chat
from jaxlab.samplers import SampleConfig

SPLIT_CHOICES = ("test", "ood", "all")
ANSWER_HEADROOM = 16  # default max_new_tokens: 2 x the longest reference answer + this


def evaluation_problems(task: tasks_lib.Task, n: int, *, split: str = "all",
                        seed: int = 0) -> list[tuple[str, tasks_lib.Example]]:
    """``n`` distinct problems as (split name, example), test problems first (module docstring)."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split={split!r} must be one of {', '.join(SPLIT_CHOICES)}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    n_test = {"test": n, "ood": 0, "all": n - n // 2}[split]
    drawn = task.splits(seed, n_train=0, n_test=n_test, n_ood=n - n_test)
    return [("test", ex) for ex in drawn["test"]] + [("ood", ex) for ex in drawn["ood"]]


def default_max_new_tokens(tokenizer, examples) -> int:
    """2 x the token count of the longest reference answer + ANSWER_HEADROOM (room for the
    stop token and a short preamble before the answer line)."""
    longest = max(len(tokenizer.encode(ex.answer)) for ex in examples)
    return 2 * longest + ANSWER_HEADROOM


def evaluate_task(cfg, params, tokenizer, task, *, n: int = 100, samples: int = 8,
                  key: jax.Array, temperature: float = 1.0, max_new_tokens: int | None = None,
                  batch_size: int = 32, split: str = "all", seed: int = 0, chat: bool | None = None,
                  confidence: float = 0.95, n_boot: int = stats.DEFAULT_BOOTSTRAP,
                  progress: bool = True, across_processes: bool = False) -> dict:
    """Greedy accuracy, pass@k and maj@k of a model on ``task`` (a Task or its name).

    Args:
      cfg, params: a :mod:`jaxlab.models.transformer` model; tokenizer: the shared protocol.
      n: problems (``split`` and ``seed`` pick them; :func:`evaluation_problems`).
      samples: sampled completions per problem (0: greedy only); key: their PRNG key.
      max_new_tokens: generation budget (default :func:`default_max_new_tokens`).
      chat: wrap prompts in the chat template (default:
        :func:`~jaxlab.evals.generation.prompts_as_chat`).
      across_processes: in a multi-process run, each process generates its share of the
        batches and every process gets the same results as one process
        (:func:`~jaxlab.evals.generation.complete`).
    Returns:
      ``{"task", "knob", "n", "samples", "temperature", "max_new_tokens", "split", "seed", "chat",
      "confidence", "overall", "by_difficulty", "by_split", "problems"}``: ``overall``, each
      ``by_difficulty[d]`` and ``by_split[s]`` as :func:`jaxlab.evals.scoring.summarize_records`,
      ``problems`` the per-problem records of :func:`jaxlab.evals.scoring.score_problem`.
    """
    check_vocab(cfg, tokenizer)
    task = tasks_lib.get(task) if isinstance(task, str) else task
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise ValueError(f"samples must be an int >= 0, got {samples!r}")
    problems = evaluation_problems(task, n, split=split, seed=seed)
    examples = [ex for _, ex in problems]
    chat = prompts_as_chat(tokenizer) if chat is None else bool(chat)
    if max_new_tokens is None:
        max_new_tokens = default_max_new_tokens(tokenizer, examples)
    prompts = [encode_task_prompt(tokenizer, ex.prompt, chat=chat) for ex in examples]
    common = dict(max_new_tokens=max_new_tokens, stop_tokens=tuple(tokenizer.eos_ids),
                  pad_id=tokenizer.pad_id)
    key_greedy, key_samples = jax.random.split(key)

    greedy, greedy_truncated = complete(
        cfg, params, tokenizer, prompts, sample_cfg=SampleConfig(temperature=0.0, **common),
        key=key_greedy, batch_size=batch_size, progress=progress, desc=f"{task.name} greedy",
        across_processes=across_processes)
    sampled = [[] for _ in examples]
    if samples:
        rows = [p for p in prompts for _ in range(samples)]
        texts, _ = complete(
            cfg, params, tokenizer, rows, sample_cfg=SampleConfig(temperature=temperature, **common),
            key=key_samples, batch_size=batch_size, progress=progress,
            desc=f"{task.name} {samples} samples", across_processes=across_processes)
        sampled = [texts[i * samples:(i + 1) * samples] for i in range(len(examples))]

    records = []
    for (split_name, ex), g, trunc, s in zip(problems, greedy, greedy_truncated, sampled, strict=True):
        record = scoring.score_problem(task, ex, g, s, split=split_name)
        record["greedy_truncated"] = bool(trunc)
        records.append(record)
    summary = scoring.summarize(records, confidence=confidence, n_boot=n_boot, seed=seed)
    return {"task": task.name, "knob": task.knob, "n": len(records), "samples": samples,
            "temperature": float(temperature), "max_new_tokens": int(max_new_tokens), "split": split,
            "seed": seed, "chat": chat, "confidence": confidence, **summary, "problems": records}
