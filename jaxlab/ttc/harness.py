"""Test-time compute methods side by side: accuracy against tokens generated, on one set of
samples.

    out = run_methods(cfg, params, tokenizer, examples, task, methods=("greedy", "vote", "deepconf"),
                      budget=8, key=jax.random.key(0))
    out["methods"]["vote"]["points"]     [{"k", "accuracy", "low", "high", "tokens", "wall_s"}, ...]

Samples. Each problem gets one greedy completion (temperature 0) and ``budget`` = N sampled
completions at ``temperature``, drawn once: the N samples of a prompt share one prefill
(``generate(..., samples_per_prompt=N)``) and keep, per token, the model's top-k log-probs.
Every sampling method is computed from the first k of these N samples (k = 1, 2, 4, ..., N;
samples are i.i.d., so the first k are a random k), so the methods differ only in what they do
with the same traces.

Per problem p, with samples i = 1..k, a_i the task's parse of sample i's answer (None:
malformed, no vote), c_i its correctness, L_i its generated tokens (the stop token included)
and C_i its trace confidence (DeepConf's lowest group confidence, :mod:`jaxlab.ttc.deepconf`,
window ``window``, token confidence over the top ``top_logprobs`` log-probs):

    greedy           correct(greedy answer)                     tokens L_greedy
    bon              best-of-k with the task's verifier as the scorer (an oracle: 1 when any
                     c_i = 1; an upper bound for any real scorer)   tokens sum_i L_i
    bon-rm           best-of-k by a model's scores r_i of the k samples (``scorer``: e.g. a GenRM
                     verifier's p("Yes"), :mod:`jaxlab.ttc.scorers`): the mean c_i of the
                     samples tied at the top r_i (:mod:`jaxlab.ttc.best_of_n`)
                                                                    tokens sum_i L_i (the
                     scorer's passes read the samples, they generate nothing)
    vote             majority vote of the a_i (self-consistency)    tokens sum_i L_i
    wvote            vote weighted by C_i                            tokens sum_i L_i
    deepconf         DeepConf offline: the ``keep`` fraction of samples with the highest C_i,
                     weighted by C_i                                 tokens sum_i L_i
    deepconf-online  DeepConf online: samples 1..W (W = ``warmup`` < k) are generated in full
                     and set the threshold s = the (100 - 100 ``stop_keep``)-th percentile of
                     their C_i; every sample stops at the first step whose group confidence is
                     below s (:func:`~jaxlab.ttc.deepconf.early_stop_step`). A stopped sample
                     does not vote; the others vote weighted by C_i. Tokens: sum_{i <= W} L_i +
                     sum_{i > W} (stop step + 1 if stopped else L_i): a stopped sample's tokens
                     up to its stop are exactly those it generated here, so the saving is exact.
    inter            "Beyond the Last Answer" (Hammoud et al. 2025): the first sampled trace (its M
                     tokens before the stop token) is cut after c_j = round(j M / J) tokens,
                     j = 1..J-1 (J = ``inter_points``; distinct cuts in [1, M - 1]); from each cut
                     the model continues greedily (prompt + the trace's first c_j tokens), and the
                     answer of prefix + continuation is taken. Score: the majority vote of the J - 1
                     (or fewer) intermediate answers and the trace's own last answer (whose score
                     alone is ``vote`` at k = 1). Tokens: L_1 + the continuations' tokens (the
                     prefixes are fed again, not generated). The trace is sampled, not greedy: a
                     greedy continuation of a greedy trace's prefix regenerates that trace.

A vote's score is the share of correct answers among the answers tied at the top (a uniform
tie-break in expectation); no vote at all scores 0. Accuracy: the mean score over problems, with
a 95% percentile bootstrap interval over problems (:func:`jaxlab.stats.bootstrap_mean_interval`).
Tokens: the mean over problems of the tokens above. Wall time: greedy's is measured; a sampling
method's is the measured time of the shared sampling pass times its share of the sampled tokens
(an estimate: the pass decodes all N samples of a batch together).

Answers are parsed by the task (bounded, never evaluated; :func:`jaxlab.evals.scoring.answer_key`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxlab import stats
from jaxlab.evals.generation import check_vocab, encode_task_prompt, prompts_as_chat
from jaxlab.evals.scoring import answer_key
from jaxlab.samplers import SampleConfig, generate, pad_prompts
from jaxlab.ttc.best_of_n import best_of_n
from jaxlab.ttc.deepconf import early_stop_step, stop_threshold, token_confidence, trace_confidence
from jaxlab.ttc.voting import filtered_vote, weighted_vote

METHODS = ("greedy", "bon", "bon-rm", "vote", "wvote", "deepconf", "deepconf-online", "inter")
SAMPLED_METHODS = ("bon", "bon-rm", "vote", "wvote", "deepconf", "deepconf-online", "inter")


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """``methods`` as a tuple, or ValueError naming the unknown ones and the known ones."""
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown} (or none given); methods: {', '.join(METHODS)}")
    return methods


def budgets(n: int) -> list[int]:
    """The sample counts k of the curves: 1, 2, 4, ... below n, and n."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


# ---------------------------------------------------------------- sampling (the model)

def draw_traces(cfg, params, tokenizer, prompts: Sequence[np.ndarray], *, samples: int,
                sample_cfg: SampleConfig, key: jax.Array, batch_size: int = 64, window: int = 16,
                progress: bool = False, desc: str = "sample") -> tuple[list[list[dict]], float]:
    """``samples`` completions of each prompt: ([per prompt: [trace, ...]], wall seconds).

    A trace is ``{"text", "ids" (generated ids, the stop token included), "length",
    "stopped", "truncated", "confidence" (C_t per generated token, [L] list; empty without
    top log-probs), "trace_confidence" (lowest group confidence, None without top
    log-probs)}``; ``text`` is decoded without the stop token. A batch holds
    max(1, batch_size // samples) prompts, each prefilled once and sampled ``samples`` times;
    batch j draws with ``fold_in(key, j)``; the last batch is filled up by repeating its first
    prompt (outputs dropped), so every batch has one shape."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    per_batch = max(1, batch_size // samples)
    per_batch = min(per_batch, len(prompts))
    stops = set(sample_cfg.stop_tokens)
    out: list[list[dict]] = []
    start_time = time.perf_counter()
    starts = range(0, len(prompts), per_batch)
    for j, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=not progress)):
        rows = list(prompts[start:start + per_batch])
        n_real = len(rows)
        rows += [rows[0]] * (per_batch - n_real)
        tokens_BT, mask_BT = pad_prompts(rows, sample_cfg.pad_id)
        res = jax.device_get(generate(params, cfg, jnp.asarray(tokens_BT), jnp.asarray(mask_BT),
                                      jax.random.fold_in(key, j), sample_cfg, samples_per_prompt=samples))
        tokens_BN, mask_BN, top_BNk = np.asarray(res.tokens), np.asarray(res.mask), np.asarray(res.top_logprobs)
        for b in range(n_real):
            traces = []
            for s in range(samples):
                r = b * samples + s
                n = int(mask_BN[r].sum())
                ids = tokens_BN[r, :n]
                stopped = n > 0 and int(ids[-1]) in stops
                conf = token_confidence(top_BNk[r, :n]) if top_BNk.shape[-1] and n else np.zeros(0)
                traces.append({
                    "text": tokenizer.decode(ids[:-1] if stopped else ids), "ids": [int(t) for t in ids],
                    "length": n, "stopped": bool(stopped),
                    "truncated": bool(not stopped and n >= sample_cfg.max_new_tokens),
                    "confidence": [float(c) for c in conf],
                    "trace_confidence": trace_confidence(conf, window=window) if conf.size else None})
            out.append(traces)
    return out, time.perf_counter() - start_time


def run_methods(cfg, params, tokenizer, examples, task, *, methods: Sequence[str] = METHODS, budget: int = 8,
                key: jax.Array, temperature: float = 1.0, max_new_tokens: int = 64, top_logprobs: int = 20,
                window: int = 16, keep: float = 0.5, warmup: int | None = None, stop_keep: float = 0.9,
                inter_points: int = 4, batch_size: int = 64, chat: bool | None = None, confidence: float = 0.95,
                n_boot: int = stats.DEFAULT_BOOTSTRAP, seed: int = 0, progress: bool = False,
                scorer=None) -> dict:
    """Samples once and scores every method of ``methods`` on ``examples`` (Examples of
    ``task``) (module docstring). ``warmup`` defaults to budget // 2. ``scorer``
    (:data:`jaxlab.ttc.scorers.Scorer`, ``scorer(problems, solutions) -> scores``) is what
    ``bon-rm`` selects by; each sample's score is kept as its ``score``. Returns
    :func:`score_methods`'s dict with ``settings`` (everything above), ``wall_s``
    ({"greedy", "samples"}) and ``problems`` (per problem: prompt, answer, greedy and
    sampled traces with their answers and correctness)."""
    methods = check_methods(methods)
    if "bon-rm" in methods and scorer is None:
        raise ValueError("method bon-rm needs a scorer (e.g. jaxlab.ttc.scorers.genrm_scorer)")
    check_vocab(cfg, tokenizer)
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ValueError(f"budget must be an int >= 1, got {budget!r}")
    warmup = budget // 2 if warmup is None else warmup
    chat = prompts_as_chat(tokenizer) if chat is None else bool(chat)
    prompts = [encode_task_prompt(tokenizer, e.prompt, chat=chat) for e in examples]
    common = dict(max_new_tokens=max_new_tokens, stop_tokens=tuple(tokenizer.eos_ids), pad_id=tokenizer.pad_id,
                  top_logprobs=top_logprobs)
    key_greedy, key_samples = jax.random.split(key)
    greedy, greedy_s = [[None]] * len(prompts), 0.0
    if "greedy" in methods:
        greedy, greedy_s = draw_traces(cfg, params, tokenizer, prompts, samples=1, key=key_greedy, window=window,
                                       sample_cfg=SampleConfig(temperature=0.0, **common), batch_size=batch_size,
                                       progress=progress, desc="greedy")
    sampled, sample_s = [[] for _ in prompts], 0.0
    if any(m in SAMPLED_METHODS for m in methods):
        sampled, sample_s = draw_traces(cfg, params, tokenizer, prompts, samples=budget, key=key_samples,
                                        window=window, batch_size=batch_size, progress=progress,
                                        sample_cfg=SampleConfig(temperature=temperature, **common),
                                        desc=f"{budget} samples")
    inter, inter_s = [[] for _ in prompts], 0.0
    if "inter" in methods:
        cuts = [cut_points(len(s[0]["ids"]) - s[0]["stopped"], inter_points) for s in sampled]
        rows = [np.concatenate([p, np.asarray(s[0]["ids"][:c], np.int32)])
                for p, s, cs in zip(prompts, sampled, cuts) for c in cs]
        conts, inter_s = draw_traces(cfg, params, tokenizer, rows, samples=1, key=key_greedy, window=window,
                                     sample_cfg=SampleConfig(temperature=0.0, **common), batch_size=batch_size,
                                     progress=progress, desc="intermediate answers") if rows else ([], 0.0)
        it = iter(conts)
        for i, (s, cs) in enumerate(zip(sampled, cuts)):
            for c in cs:
                cont = next(it)[0]
                prefix = tokenizer.decode(np.asarray(s[0]["ids"][:c], np.int32))
                inter[i].append({"cut": c, "text": prefix + cont["text"], "length": cont["length"]})
    if "bon-rm" in methods:
        flat = [(e.prompt, t["text"]) for e, s in zip(examples, sampled) for t in s]
        scores = np.asarray(scorer([p for p, _ in flat], [t for _, t in flat]), np.float64)
        if scores.shape != (len(flat),):
            raise ValueError(f"the scorer returned shape {scores.shape} for {len(flat)} samples")
        it = iter(scores.tolist())
        sampled = [[{**t, "score": next(it)} for t in s] for s in sampled]
    problems = []
    for e, g, s, its in zip(examples, greedy, sampled, inter, strict=True):
        record = {"prompt": e.prompt, "answer": e.answer, "difficulty": int(e.meta.get("difficulty", 0))}
        if g[0] is not None:
            record["greedy"] = _label(task, e, g[0])
        record["samples"] = [_label(task, e, t) for t in s]
        if "inter" in methods:
            record["inter"] = [_label(task, e, t) for t in its]
        problems.append(record)
    wall_s = {"greedy": greedy_s, "samples": sample_s, "inter": inter_s}
    scored = score_methods(problems, methods, budget=budget, window=window, keep=keep, warmup=warmup,
                           stop_keep=stop_keep, wall_s=wall_s,
                           confidence=confidence, n_boot=n_boot, seed=seed)
    settings = dict(task=task.name, n=len(examples), budget=budget, temperature=float(temperature),
                    max_new_tokens=max_new_tokens, top_logprobs=top_logprobs, window=window, keep=keep,
                    warmup=warmup, stop_keep=stop_keep, inter_points=inter_points, batch_size=batch_size, chat=chat,
                    seed=seed, confidence=confidence)
    return {"settings": settings, "wall_s": wall_s, **scored,
            "problems": problems}


def task_problems(task_name: str, n: int, *, seed: int, difficulty: tuple[int, int] | None = None):
    """(task, n test problems of seed ``seed``): the task's test split, over ``difficulty``
    (LOW, HIGH) in place of its training range when given. Raises TaskError on an unknown
    task or more problems than the range holds."""
    from jaxlab import tasks as tasks_lib

    task = tasks_lib.get(task_name, **({} if difficulty is None else {"train_difficulty": tuple(difficulty)}))
    return task, task.splits(seed, n_train=0, n_test=n, n_ood=0)["test"]


def run_task(model: str, task_name: str, *, n: int, seed: int = 0, difficulty: tuple[int, int] | None = None,
             **kwargs) -> dict:
    """:func:`run_methods` of a model spec (:func:`jaxlab.interop.models.load_experiment_model`:
    a registry name, a path or ``"tiny-random"``) on :func:`task_problems`, sampling key
    ``key(seed)``; ``kwargs`` go to :func:`run_methods`. Adds ``model`` and ``difficulty``."""
    from jaxlab.interop.models import load_experiment_model

    task, examples = task_problems(task_name, n, seed=seed, difficulty=difficulty)
    cfg, params, tokenizer = load_experiment_model(model, seed)
    out = run_methods(cfg, params, tokenizer, examples, task, key=jax.random.key(seed), seed=seed, **kwargs)
    return {"model": model, "difficulty": None if difficulty is None else list(difficulty), **out}


def run_config(cfg, out_dir, methods: Sequence[str], *, progress: bool = False, **kwargs) -> dict:
    """:func:`run_task` from an experiment config's fields (model, task, difficulty, n_problems,
    seed, budget, temperature, max_new_tokens, top_logprobs, window, keep, batch_size; ``kwargs``:
    other settings of :func:`run_methods`), its files written into ``out_dir``
    (:func:`write_results`)."""
    out = run_task(cfg.model, cfg.task, n=cfg.n_problems, seed=cfg.seed, difficulty=cfg.difficulty,
                   methods=methods, budget=cfg.budget, temperature=cfg.temperature,
                   max_new_tokens=cfg.max_new_tokens, top_logprobs=cfg.top_logprobs, window=cfg.window,
                   keep=cfg.keep, batch_size=cfg.batch_size, progress=progress, **kwargs)
    write_results(out, out_dir, title=f"{cfg.model}, {cfg.task} {tuple(cfg.difficulty)}, seed {cfg.seed}")
    return out


def cut_points(m: int, points: int) -> list[int]:
    """The cuts of a trace of ``m`` tokens for ``inter``: the distinct round(j m / points),
    j = 1..points-1, that lie in [1, m - 1] (none for m < 2)."""
    if points < 2:
        raise ValueError(f"inter_points must be >= 2, got {points}")
    return sorted({c for c in (round(j * m / points) for j in range(1, points)) if 1 <= c <= m - 1})


def _label(task, example, trace: dict) -> dict:
    return {**trace, "key": answer_key(task, trace["text"]), "correct": bool(task.verify(example, trace["text"]))}


# ---------------------------------------------------------------- scoring (no model)

def vote_score(keys: Sequence, correct: Sequence[bool], vote: dict) -> float:
    """The score of a vote (:func:`~jaxlab.ttc.voting.weighted_vote`'s dict): the share of its
    tied winners that are correct; 0 without winners. Equal keys must agree on correctness."""
    if not vote["winners"]:
        return 0.0
    right = {k: bool(c) for k, c in zip(keys, correct) if k is not None}
    return sum(right[w] for w in vote["winners"]) / len(vote["winners"])


def online_deepconf(traces: Sequence[dict], *, warmup: int, window: int, stop_keep: float) -> dict:
    """DeepConf online on one problem's traces (module docstring): ``{"threshold", "stops"
    (per trace: its stop step or None), "voters" (indices), "tokens"}``. Warm-up traces are
    generated in full but vote under the same rule (only if never below the threshold)."""
    if not 1 <= warmup < len(traces):
        raise ValueError(f"warmup must be in [1, {len(traces) - 1}] for {len(traces)} traces, got {warmup}")
    if any(t["trace_confidence"] is None for t in traces):
        raise ValueError("deepconf-online needs token confidences (top_logprobs > 0)")
    s = stop_threshold([t["trace_confidence"] for t in traces[:warmup]], stop_keep)
    stops = [early_stop_step(t["confidence"], s, window) if t["length"] else None for t in traces]
    tokens = sum(t["length"] if i < warmup or stop is None else stop + 1
                 for i, (t, stop) in enumerate(zip(traces, stops)))
    voters = [i for i, stop in enumerate(stops) if stop is None]
    return {"threshold": s, "stops": stops, "voters": voters, "tokens": tokens}


def problem_scores(record: dict, method: str, k: int, *, window: int, keep: float, warmup: int,
                   stop_keep: float) -> tuple[float, int]:
    """(score, tokens generated) of ``method`` on one problem record with its first k samples."""
    if method == "greedy":
        g = record["greedy"]
        return float(g["correct"]), int(g["length"])
    if method == "inter":
        answers = [*record["inter"], record["samples"][0]]
        keys, correct = [t["key"] for t in answers], [t["correct"] for t in answers]
        return vote_score(keys, correct, weighted_vote(keys)), sum(int(t["length"]) for t in answers)
    traces = record["samples"][:k]
    if len(traces) < k:
        raise ValueError(f"a problem has {len(record['samples'])} samples, fewer than k={k}")
    keys = [t["key"] for t in traces]
    correct = [t["correct"] for t in traces]
    tokens = sum(int(t["length"]) for t in traces)
    conf = [t["trace_confidence"] for t in traces]
    if method == "bon":
        return float(any(correct)), tokens
    if method == "bon-rm":
        return float(best_of_n([[t["score"] for t in traces]], [correct])[0]), tokens
    if method == "vote":
        return vote_score(keys, correct, weighted_vote(keys)), tokens
    if method in ("wvote", "deepconf") and any(c is None for c in conf):
        raise ValueError(f"{method} needs token confidences (top_logprobs > 0)")
    if method == "wvote":
        return vote_score(keys, correct, weighted_vote(keys, conf)), tokens
    if method == "deepconf":
        return vote_score(keys, correct, filtered_vote(keys, conf, keep)), tokens
    if method == "deepconf-online":
        online = online_deepconf(traces, warmup=warmup, window=window, stop_keep=stop_keep)
        idx = online["voters"]
        vote = weighted_vote([keys[i] for i in idx], [conf[i] for i in idx])
        return vote_score([keys[i] for i in idx], [correct[i] for i in idx], vote), online["tokens"]
    raise ValueError(f"unknown method {method!r}; methods: {', '.join(METHODS)}")


def method_ks(method: str, budget: int, warmup: int) -> list[int]:
    """The budgets a method is scored at: greedy and inter at 1 (one trace); deepconf-online
    at k > warmup; the others at :func:`budgets`."""
    if method in ("greedy", "inter"):
        return [1]
    ks = budgets(budget)
    return [k for k in ks if k > warmup] if method == "deepconf-online" else ks


def score_methods(problems: Sequence[dict], methods: Sequence[str], *, budget: int, window: int, keep: float,
                  warmup: int, stop_keep: float, wall_s: dict | None = None, confidence: float = 0.95,
                  n_boot: int = stats.DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """``{"methods": {method: {"points": [{"k", "accuracy", "low", "high", "tokens", "wall_s"}],
    "scores": [per-problem scores at k = budget], "tokens": [per-problem tokens at k = budget]}}}``
    (module docstring). ``problems``: records with ``greedy`` and ``samples`` traces, each
    trace {"key", "correct", "length", "confidence", "trace_confidence"}."""
    methods = check_methods(methods)
    if not problems:
        raise ValueError("score_methods needs at least one problem")
    wall_s = wall_s or {}
    sampled_total = sum(int(t["length"]) for r in problems for t in r.get("samples", [])) or 1
    out = {}
    for method in methods:
        points, last = [], None
        for k in method_ks(method, budget, warmup):
            sc = [problem_scores(r, method, k, window=window, keep=keep, warmup=warmup, stop_keep=stop_keep)
                  for r in problems]
            scores = np.array([s for s, _ in sc], np.float64)
            tokens = np.array([t for _, t in sc], np.int64)
            low, high = stats.bootstrap_mean_interval(scores, confidence, n_boot=n_boot, seed=seed)
            if method == "greedy":
                wall = float(wall_s.get("greedy", 0.0))
            elif method == "inter":
                first = sum(int(r["samples"][0]["length"]) for r in problems)
                wall = float(wall_s.get("samples", 0.0)) * first / sampled_total + float(wall_s.get("inter", 0.0))
            else:
                wall = float(wall_s.get("samples", 0.0)) * float(tokens.sum()) / sampled_total
            points.append({"k": k, "accuracy": float(scores.mean()), "low": low, "high": high,
                           "tokens": float(tokens.mean()), "wall_s": wall})
            last = (scores, tokens)
        out[method] = {"points": points, "scores": last[0].tolist(), "tokens": last[1].tolist()}
    return {"methods": out}


# ---------------------------------------------------------------- reports

def markdown_table(results: dict) -> str:
    """One row per method and budget k: accuracy [95% interval], mean tokens generated per
    problem, wall seconds."""
    lines = ["| method | k | accuracy [95% interval] | tokens / problem | wall s |", "|---|---:|---|---:|---:|"]
    for method, m in results["methods"].items():
        for p in m["points"]:
            lines.append(f"| {method} | {p['k']} | {p['accuracy']:.3f} [{p['low']:.3f}, {p['high']:.3f}] | "
                         f"{p['tokens']:.1f} | {p['wall_s']:.1f} |")
    return "\n".join(lines)


def plot_accuracy_vs_tokens(results: dict, path, title: str = "") -> None:
    """Accuracy (with its interval) against mean tokens generated per problem, one line per
    method through its budgets k, log-scaled tokens."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, m in results["methods"].items():
        pts = m["points"]
        x = [p["tokens"] for p in pts]
        y = [p["accuracy"] for p in pts]
        yerr = [[max(0.0, p["accuracy"] - p["low"]) for p in pts], [max(0.0, p["high"] - p["accuracy"]) for p in pts]]
        ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=method)
        for p in pts:
            ax.annotate(f"{p['k']}", (p["tokens"], p["accuracy"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("tokens generated per problem (log scale; labels: samples k)")
    ax.set_ylabel("accuracy (95% interval)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(results: dict, out_dir, *, title: str = "") -> dict:
    """Writes results.json (everything but the per-problem records), samples.jsonl (one problem
    a line), table.md and accuracy_vs_tokens.png into ``out_dir``; returns their paths."""
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "samples": out / "samples.jsonl", "table": out / "table.md",
             "plot": out / "accuracy_vs_tokens.png"}
    summary = {k: v for k, v in results.items() if k != "problems"}
    paths["results"].write_text(json.dumps(summary, indent=2) + "\n")
    with open(paths["samples"], "w") as f:
        for r in results.get("problems", []):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    head = [f"# Test-time compute: {title}\n"] if title else []
    if results.get("command"):
        head.append(f"`{results['command']}`\n")
    paths["table"].write_text("\n".join(head + [markdown_table(results), "",
                                                f"![accuracy vs tokens]({paths['plot'].name})", ""]))
    plot_accuracy_vs_tokens(results, paths["plot"], title=title)
    return paths
