"""Reflect, Retry, Reward (Bensal et al. 2025, "Reflect, Retry, Reward: Self-Improving LLMs via
Reinforcement Learning") on SmolLM2-135M-Instruct and Countdown.

Method. A failed first attempt is followed, in the same ChatML conversation, by a user turn
asking for a self-reflection; the model writes it as an assistant turn, a user turn asks it to
try again, and it answers a second time (jaxlab.rl.reflect, layout "turns"):

    system, user: problem, assistant: attempt 1 <|im_end|>,
    user: REFLECT_TEXT, assistant: reflection f <|im_end|>, user: RETRY_TEXT, assistant: attempt 2

For each failed attempt G reflections (and retries) are sampled; reward r = 1 when the retry
solves the problem; GRPO advantages A = (r - mean_G r) / std_G r; the clipped policy-gradient
loss sees the reflection tokens only (retry and prompts are context). No SFT: the reflections
are the instruct model's own, so they can carry information (which operation to change, which
number was unused). Countdown (jaxlab.tasks.countdown, 2-3 numbers up to 10): the answer is the
last non-blank line of a reply, up to its first "=" ("5-2 = 3" reads as 5-2), checked by the
task's verifier (parsed, never eval-ed).

Failures are mined first, as in the paper: from a pool of problems, those on which all
``mine_samples`` sampled first attempts (temperature 1) fail. RL trains on the mined train
problems; evaluation is greedy on the first ``n_test`` mined problems of a held-out test pool
(the task's splits share no problem). Sampled mining keeps the greedy measurement before
training independent of the selection (greedy failures mined and then re-measured greedily
could only improve, whatever the training did).

    first try   greedy attempt 1 solves the problem
    second try  solved at the first try, or by the greedy retry after one greedy reflection

Claim (fixed before any run, version 2): on held-out mined failures, training that rewards
only reflection tokens raises greedy second-try success. Effect: mean over seeds and problems
of second_after - second_before (paired per problem); 95% interval: nested paired bootstrap
over seeds and problems (jaxlab.stats.paired_bootstrap_interval); held when the interval lies
above 0, not held when it lies at or below 0, else inconclusive. Preconditions: (1) every
seed mined at least ``min_mined_test`` held-out failures; (2) the base model's second-try
success on them is below 1 (room to rise); (3) retries can succeed: some RL rollout group of G
reflections held both a solved and an unsolved retry (else every advantage is 0, the policy
never moves and the method is untested). The report adds, not as the verdict: the same test
for first-try success (the paper's second claim), McNemar's exact test of the pooled pairs,
Wilson intervals of each success rate, and reflections before and after training.
Seeds vary the problems (pools and mining), the rollouts and the evaluation problems; the
pretrained weights are the same.

Presets:

    smoke  a tiny random model (2 layers, d 64) over SmolLM2's tokenizer and ChatML template:
           the whole pipeline in a few minutes on 2 CPU cores; it never solves Countdown, so
           precondition 3 fails and the verdict is inconclusive. (SmolLM2 cut to its first
           layers, as in tests/train/test_smollm2_trainers.py, cannot solve Countdown either,
           and its 28M-parameter embedding makes every update and checkpoint slower; the
           tokenizer and template, which the smoke run checks, are the real ones here.)
           jaxlab run experiments/reflect_retry_reward.py --preset smoke --seeds 2 --publish
    paper  SmolLM2-135M-Instruct, all 30 layers; 2,000 + 1,200 pool problems, 4 mining samples,
           500 held-out mined failures per seed, 200 GRPO steps (lr 3e-6, fixed before any run)
           of 16 failed prompts x 8 reflections (up to 64 tokens), 3 seeds. Needs a GPU: on the
           2 shared CPU cores 48 greedy answers took 75 s and one RL step would take over 10
           minutes. Expected about 45 minutes on one H200 (estimated from the work per seed:
           12,800 mining attempts, 2 x 500 greedy evaluations, 200 steps of 16 attempts + 128
           reflections + 128 retries and one update on 128 rows of 240 tokens; not measured):
           jaxlab run experiments/reflect_retry_reward.py --preset paper --seeds 3 --publish
           (also a line of scripts/gpu_claims.sh). Not yet run at the paper preset.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab import tasks as tasks_lib
from jaxlab.data.chat import encode_prompt
from jaxlab.rl import reflect as reflect_lib
from jaxlab.rl.loop import RLConfig, RolloutSource, normalize_rl_sums, rl_loss_sums
from jaxlab.rl.rollout import decode_response, default_sample_config, sample_completions
from jaxlab.train.fit import LoopConfig, fit
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh

CLAIM = ("On Countdown problems SmolLM2-135M-Instruct fails (mined failures, held-out split), GRPO "
         "that rewards only the self-reflection tokens of successful retries raises greedy "
         "second-try success (solved at the first try or at the retry after one reflection).")
CLAIM_VERSION = 2  # version 1: a byte model warm-started on restated prompts, judged by a strict rise
REPORT_KEYS = ["second_gain", "first_gain", "first_before", "first_after", "second_before", "second_after",
               "n_mined_test", "rollouts_with_signal"]
REFLECT_TEXT = ("Your answer is wrong. In one or two sentences, say what went wrong and what to "
                "change. Do not write the answer yet.")
RETRY_TEXT = "Try again. Reply with the expression only."
LAYOUT = reflect_lib.Layout("turns", reflect_text=REFLECT_TEXT, retry_text=RETRY_TEXT)
EXAMPLES_SHOWN = 4

PRESETS = {
    "smoke": {"model": "tiny-random", "n_pool_train": 16, "n_pool_test": 8, "mine_samples": 2,
              "n_test": 8, "min_mined_test": 4, "batch_size": 8,
              "rl.prompts_per_step": 2, "rl.group_size": 4, "rl.max_new_tokens": 8,
              "rl.reflect_max_tokens": 8, "rl.loop.steps": 1, "rl.loop.checkpoint_every": 1},
    "paper": {"model": "smollm2-135m-instruct"},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "reflect_retry_reward"
    model: str = "smollm2-135m-instruct"  # a name jaxlab.interop.models.load_model takes, or "tiny-random"
    numbers: tuple[int, int] = (2, 3)     # Countdown: how many numbers
    max_number: int = 10
    max_target: int = 100
    n_pool_train: int = 2000
    n_pool_test: int = 1200
    mine_samples: int = 4                 # a problem is a failure when all of these attempts fail
    n_test: int = 500                     # held-out mined failures evaluated (the first ones)
    min_mined_test: int = 500             # precondition (1)
    batch_size: int = 128                 # rows per sampling call
    rl: RLConfig = RLConfig(prompts_per_step=16, group_size=8, ppo_epochs=1, max_new_tokens=24,
                            reflect_max_tokens=64, temperature=1.0, mode="reflect",
                            loop=LoopConfig(steps=200, log_every=1, eval_every=100_000,
                                            checkpoint_every=50))
    rl_optim: OptimConfig = OptimConfig(lr=3e-6, warmup_steps=10, schedule="constant", weight_decay=0.0)
    mesh: MeshConfig = MeshConfig(data=1)
    seed: int = 0


def get_config():
    return Config()


# ---------------------------------------------------------------- prompts and answers (pure)

def instruction(numbers, target: int) -> str:
    """The user message of a Countdown problem."""
    return (f"Write an arithmetic expression that equals {target}, using each of the numbers "
            f"{', '.join(str(n) for n in numbers)} exactly once and only + - * / and parentheses. "
            f"Reply with the expression only.")


def expression(response: str) -> str:
    """The answer in a reply: its last non-blank line, up to its first "=", stripped
    ("Answer:" prefixes are not removed; "" for a blank reply)."""
    lines = [line.strip() for line in response.splitlines() if line.strip()]
    return lines[-1].split("=", 1)[0].strip() if lines else ""


def solved(examples, responses) -> np.ndarray:
    """1.0 where the reply's :func:`expression` solves the example (the task's verifier), float32 [B]."""
    out = np.zeros(len(responses), np.float32)
    for i, (ex, text) in enumerate(zip(examples, responses)):
        out[i] = tasks_lib.get(ex.meta["task"]).verify(ex.meta, expression(text))
    return out


def failures(correct_PK) -> np.ndarray:
    """Indices of the problems whose K attempts all failed: {p : sum_k correct[p, k] = 0}."""
    return np.flatnonzero(np.asarray(correct_PK).reshape(len(correct_PK), -1).sum(axis=1) == 0)


def second_try(first_P, retry_P) -> np.ndarray:
    """second = first OR retry (a retry is only made after a failed first try), float32 [P]."""
    return np.maximum(np.asarray(first_P, np.float32), np.asarray(retry_P, np.float32))


# ---------------------------------------------------------------- model, problems, mining

def load(cfg: Config):
    """(model config, params, tokenizer). "tiny-random": a 2-layer d-64 random model over
    SmolLM2-135M-Instruct's tokenizer (the GGUF's metadata only) and ChatML template."""
    from jaxlab.interop import models

    if cfg.model != "tiny-random":
        return models.load_model(cfg.model)
    from jaxlab.interop import gguf
    from jaxlab.models import transformer

    tok = gguf.tokenizer_from_gguf(gguf.read_metadata(models.model_path("smollm2-135m-instruct")))
    mcfg = transformer.Config(vocab_size=-(-tok.vocab_size // 64) * 64, d_model=64, n_layers=2, n_heads=2,
                              n_kv_heads=1, head_dim=32, mlp_dim=128)
    return mcfg, transformer.init(mcfg, jax.random.key(0)), tok


def problems(cfg: Config) -> dict:
    """Train and test pools (disjoint), prompts rewritten as :func:`instruction`."""
    task = tasks_lib.get("countdown", train_difficulty=cfg.numbers, ood_difficulty=cfg.numbers,
                         max_number=cfg.max_number, max_target=cfg.max_target)
    splits = task.splits(cfg.seed, cfg.n_pool_train, cfg.n_pool_test, 0)
    return {name: [dataclasses.replace(e, prompt=instruction(e.meta["numbers"], e.meta["target"]))
                   for e in splits[name]] for name in ("train", "test")}


def mine(params, mcfg, tok, examples, cfg: Config, key) -> np.ndarray:
    """correct [P, K]: K sampled first attempts per problem (the RL sampling settings)."""
    K = cfg.mine_samples
    prompts = [encode_prompt(e.prompt, tok) for e in examples for _ in range(K)]
    out = sample_completions(params, mcfg, prompts, key, cfg.rl.sample_config(tok), batch_size=cfg.batch_size)
    texts = [decode_response(t, m, tok) for t, m in zip(out["tokens"], out["mask"])]
    return solved([e for e in examples for _ in range(K)], texts).reshape(len(examples), K)


def evaluate(params, mcfg, tok, examples, cfg: Config) -> dict:
    """Greedy first try, and for the failures a greedy reflection and retry: per problem
    ``first``, ``retry`` and ``second`` (lists of 0/1), and the first failures' conversations."""
    key = jax.random.key(0)  # greedy: unused
    greedy = default_sample_config(cfg.rl.max_new_tokens, 0.0, tok)
    reflect_greedy = dataclasses.replace(default_sample_config(cfg.rl.reflect_max_tokens, 0.0, tok),
                                         stop_tokens=reflect_lib.reflect_stop_tokens(tok, LAYOUT))
    out = sample_completions(params, mcfg, [encode_prompt(e.prompt, tok) for e in examples], key, greedy,
                             batch_size=cfg.batch_size)
    texts = [decode_response(t, m, tok) for t, m in zip(out["tokens"], out["mask"])]
    first = solved(examples, texts)
    retry = np.zeros_like(first)
    failed = np.flatnonzero(first == 0)
    shown = []
    if len(failed):
        contexts = [reflect_lib.reflection_context(examples[i].prompt, out["tokens"][i, :out["lengths"][i]],
                                                   tok, LAYOUT) for i in failed]
        r = reflect_lib.reflect_and_retry(params, mcfg, contexts, key, reflect_cfg=reflect_greedy,
                                          answer_cfg=greedy, tokenizer=tok, layout=LAYOUT,
                                          batch_size=cfg.batch_size)
        retry[failed] = solved([examples[i] for i in failed], r["answer_text"])
        shown = [{"problem": examples[i].prompt, "attempt": texts[i], "reflection": r["reflection_text"][j],
                  "retry": r["answer_text"][j], "retry_solved": bool(retry[i])}
                 for j, i in enumerate(failed[:EXAMPLES_SHOWN])]
    return {"first": first.tolist(), "retry": retry.tolist(), "second": second_try(first, retry).tolist(),
            "shown": shown}


# ---------------------------------------------------------------- RL on reflections

class ReflectSource(RolloutSource):
    """The RL loop's rollouts (jaxlab.rl.loop, mode "reflect") with this experiment's layout
    (ChatML turns), answer reading (:func:`solved`) and fixed sampling batches."""

    def __init__(self, examples, *, model_cfg, rl: RLConfig, tokenizer, batch_size: int):
        longest = max(len(encode_prompt(e.prompt, tokenizer)) for e in examples)
        width = reflect_lib.max_row_tokens(longest, rl.max_new_tokens, rl.reflect_max_tokens, tokenizer, LAYOUT)
        super().__init__(examples, model_cfg=model_cfg, rl=rl, width=-(-width // 8) * 8, tokenizer=tokenizer)
        self.reflect_sample = rl.reflect_sample_config(tokenizer, reflect_lib.reflect_stop_tokens(tokenizer, LAYOUT))
        self.batch_size = batch_size

    def _reflect_groups(self, params, idx, key):
        G, tok = self.rl.group_size, self.tok
        k_first, k_retry = jax.random.split(key)
        first = sample_completions(params, self.model_cfg, [self.prompts[i] for i in idx], k_first, self.sample,
                                   batch_size=self.batch_size)
        texts = [decode_response(t, m, tok) for t, m in zip(first["tokens"], first["mask"])]
        first_correct = solved([self.examples[i] for i in idx], texts)
        failed = [j for j in range(len(idx)) if not first_correct[j]]
        extra = {"first_try": float(first_correct.mean()), "failed": len(failed)}
        if not failed:
            return None, extra
        contexts = [reflect_lib.reflection_context(self.examples[idx[j]].prompt,
                                                    first["tokens"][j, :first["lengths"][j]], tok, LAYOUT)
                    for j in failed for _ in range(G)]
        exs = [self.examples[idx[j]] for j in failed for _ in range(G)]
        out = reflect_lib.reflect_and_retry(params, self.model_cfg, contexts, k_retry, reflect_cfg=self.reflect_sample,
                                            answer_cfg=self.sample, tokenizer=tok, layout=LAYOUT,
                                            batch_size=self.batch_size)
        correct = solved(exs, out["answer_text"])
        tokens, masks, logps = reflect_lib.reflection_responses(out)
        extra["retry_success"] = float(correct.mean())
        return {"prompts": contexts, "tokens": tokens, "masks": masks, "logps": logps,
                "rewards": correct.reshape(-1, G), "correct": correct.reshape(-1, G),
                "lengths": np.array([len(f) for f in out["reflection"]]).reshape(-1, G),
                "truncated": out["truncated"].reshape(-1, G), "extra": extra}, extra


def train(workdir: Path, params, mcfg, tok, examples, cfg: Config, progress: bool):
    from jaxlab.models import transformer

    source = ReflectSource(examples, model_cfg=mcfg, rl=cfg.rl, tokenizer=tok, batch_size=cfg.batch_size)
    return fit(workdir, name="rl-reflect", loop=cfg.rl.loop, optim=cfg.rl_optim, mesh=experiment_mesh(cfg.mesh),
               init_params=params, param_axes=transformer.param_axes,
               loss_sums_fn=functools.partial(rl_loss_sums, model_cfg=mcfg, rl=cfg.rl), source=source,
               normalize_fn=normalize_rl_sums, progress=progress)


def _cached(path: Path, compute):
    """``compute()``'s JSON value, kept in ``path`` (a resumed run reads it back)."""
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value) + "\n")
    return value


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mcfg, params, tok = load(cfg)
    pools = problems(cfg)
    key = jax.random.key(cfg.seed)

    def mined():
        out = {}
        for s, name in enumerate(("train", "test")):
            correct_PK = mine(params, mcfg, tok, pools[name], cfg, jax.random.fold_in(key, s))
            out[name] = {"correct": correct_PK.sum(1).astype(int).tolist(), "failures": failures(correct_PK).tolist()}
        return out

    m = _cached(workdir / "mined.json", mined)
    train_set = [pools["train"][i] for i in m["train"]["failures"]]
    test_set = [pools["test"][i] for i in m["test"]["failures"][:cfg.n_test]]
    if not train_set or not test_set:
        raise ValueError(f"no mined failures to {'train on' if not train_set else 'test'} "
                         f"({len(train_set)} train, {len(test_set)} test); raise the pools")
    before = _cached(workdir / "before.json", lambda: evaluate(params, mcfg, tok, test_set, cfg))
    result = train(workdir / "rl", params, mcfg, tok, train_set, cfg, progress)
    after = _cached(workdir / "after.json",
                    lambda: evaluate(jax.device_get(result.state.params), mcfg, tok, test_set, cfg))
    # steps whose rollout held reflection groups (a step of ppo_epochs > 1 repeats its rollout's metrics)
    rollouts = [r for r in result.records if "train/groups_zero_std" in r]
    signal = sum(r["train/groups_zero_std"] < 1.0 for r in rollouts)
    retry_curve = [r["train/retry_success"] for r in result.records if "train/retry_success" in r]
    out = {"min_mined_test": cfg.min_mined_test, "n_mined_train": len(train_set), "n_mined_test": len(test_set),
           "mined_train_share": len(m["train"]["failures"]) / len(pools["train"]),
           "mined_test_share": len(m["test"]["failures"]) / len(pools["test"]),
           "pool_test_correct": m["test"]["correct"], "mined_test": m["test"]["failures"][:cfg.n_test],
           "first_before": float(np.mean(before["first"])), "first_after": float(np.mean(after["first"])),
           "second_before": float(np.mean(before["second"])), "second_after": float(np.mean(after["second"])),
           "before": before, "after": after, "rollouts": len(rollouts),
           "rollouts_with_signal": int(signal), "retry_success_curve": retry_curve}
    out["first_gain"] = out["first_after"] - out["first_before"]
    out["second_gain"] = out["second_after"] - out["second_before"]
    out["report"] = _seed_report(out)
    return out


def _seed_report(r: dict) -> str:
    lines = ["| | first try | second try |", "|---|---|---|",
             f"| before RL | {r['first_before']:.3f} | {r['second_before']:.3f} |",
             f"| after RL | {r['first_after']:.3f} | {r['second_after']:.3f} |", "",
             f"{r['n_mined_test']} held-out mined failures; {r['rollouts_with_signal']} of {r['rollouts']} "
             "RL steps had a rollout group with a solved and an unsolved retry.", ""]
    for when in ("before", "after"):
        lines.append(f"Greedy conversations {when} RL (first failures):\n")
        for s in r[when]["shown"]:
            lines.append(f"- {s['problem']!r} -> {s['attempt']!r}; reflection {s['reflection']!r}; "
                         f"retry {s['retry']!r} ({'solved' if s['retry_solved'] else 'wrong'})")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- the claim

def _paired(runs: dict, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(after_SP, before_SP) of ``metric`` ("first" or "second") over the common number P of
    evaluated problems of every seed (the first P of each)."""
    per_seed = next(iter(runs.values()))
    P = min(len(r["before"][metric]) for r in per_seed)
    after = np.array([r["after"][metric][:P] for r in per_seed], np.float64)
    before = np.array([r["before"][metric][:P] for r in per_seed], np.float64)
    return after, before


def _preconditions(runs: dict, min_mined_test: int) -> list:
    per_seed = next(iter(runs.values()))
    fewest = min(r["n_mined_test"] for r in per_seed)
    _, before = _paired(runs, "second")
    signal = [r["rollouts_with_signal"] for r in per_seed]
    return [("mined held-out failures", fewest >= min_mined_test,
             f"fewest per seed {fewest}, needed {min_mined_test}"),
            ("room to rise", float(before.mean()) < 1.0, f"base second-try success {before.mean():.3f}"),
            ("retries can succeed", min(signal) > 0,
             f"RL steps whose rollout had a group with a solved and an unsolved retry, per seed: {signal}")]


def verdict_of(runs: dict, metric: str, min_mined_test: int) -> stats.Verdict:
    after, before = _paired(runs, metric)
    r = stats.paired_bootstrap_interval(after, before)
    return stats.decide(r["effect"], r["low"], r["high"], threshold=0.0,
                        test=f"nested paired bootstrap over {r['seeds']} seeds x {r['problems']} problems",
                        preconditions=_preconditions(runs, min_mined_test))


def _min_mined_test(runs: dict) -> int:
    """The preset's precondition (1), as recorded in each seed's config."""
    return int(next(iter(runs.values()))[0]["min_mined_test"])


def claim_verdict(runs: dict) -> stats.Verdict:
    return verdict_of(runs, "second", _min_mined_test(runs))


def summarize(results: dict, workdir: Path) -> str:
    runs = {k: v if isinstance(v, list) else [v] for k, v in results.items()}
    lines = ["## Success rates (pooled over seeds) and the first-try claim\n",
             "| | before | after | McNemar exact p (after vs before) |", "|---|---|---|---|"]
    for metric in ("first", "second"):
        after, before = _paired(runs, metric)
        n = after.size
        cells = []
        for x in (before, after):
            low, high = stats.wilson_interval(int(x.sum()), n)
            cells.append(f"{x.mean():.3f} [{low:.3f}, {high:.3f}]")
        mc = stats.mcnemar_exact(after.reshape(-1), before.reshape(-1))
        lines.append(f"| {metric} try | {cells[0]} | {cells[1]} | {mc['p_value']:.3g} "
                     f"(gained {mc['b']}, lost {mc['c']}) |")
    first = verdict_of(runs, "first", _min_mined_test(runs))
    lines += ["", f"First-try success (the paper's second claim, not the verdict): **{first.outcome}**, "
                  f"{first.sentence()}.", "", "![before and after](first_second.png)", ""]
    _plot(runs, Path(workdir) / "first_second.png")
    return "\n".join(lines)


def _plot(runs: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_seed = next(iter(runs.values()))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, metric in enumerate(("first", "second")):
        for s, r in enumerate(per_seed):
            a.plot([2 * i, 2 * i + 1], [r[f"{metric}_before"], r[f"{metric}_after"]], marker="o",
                   color=f"C{s}", label=f"seed {s}" if i == 0 else None)
    a.set_xticks([0, 1, 2, 3], ["first\nbefore", "first\nafter", "second\nbefore", "second\nafter"])
    a.set_ylabel("greedy success on held-out mined failures")
    a.legend(fontsize=8)
    for s, r in enumerate(per_seed):
        curve = r["retry_success_curve"]
        if curve:
            b.plot(range(1, len(curve) + 1), curve, color=f"C{s}", alpha=0.8, marker=".", label=f"seed {s}")
    b.set_xlabel("RL step")
    b.set_ylabel("sampled retry success (training)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
