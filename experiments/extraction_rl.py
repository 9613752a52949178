"""RL with a partial-credit reward on document field extraction: DAPO on SmolLM2-135M-Instruct
with the field-level F1 as the reward, from a short SFT warm start on ``doc_extract``.

Task: ``doc_extract`` (:mod:`jaxlab.tasks.documents.extraction`): a synthetic invoice, receipt,
purchase order or form in one of six layouts, and the fields to extract; the answer is one
line of JSON. Its reward is the field-level F1 of that record against the gold one
(2 TP / (2 TP + FP + FN) after value normalisation; a malformed record scores 0;
:mod:`jaxlab.tasks.documents.records`), parsed with bounded size and depth, never evaluated.

Protocol. A short SFT warm start on the train documents (prompt -> reference record; it teaches
the format: in a pipeline check the instruct model, before SFT, began its records as JSON
spread over several lines, which the answer convention, the last non-blank line, reads as
malformed) gives ``warm``. From it, DAPO (:mod:`jaxlab.rl.loop`): G samples per document,
reward r = field F1 (``rl.reward="partial"``), group-normalised advantages, clip-higher
(eps_low 0.2, eps_high 0.28), token-mean loss, no KL, and dynamic sampling that keeps the
groups whose F1s are not all equal (std > 0; up to ``max_sample_rounds`` rounds of prompts).
DAPO rather than GRPO: with a graded reward, a group of samples that are all partly right is
the common case, and dynamic sampling is what keeps the update from spending rows on groups
whose advantages are all 0. Both models are evaluated greedily on the same held-out documents.

Claim (fixed before any run, version 1): RL with the field-F1 reward raises held-out field F1
over the SFT warm start. Effect: mean over seeds and held-out documents of F1_RL - F1_warm
(paired per document: the same documents, the same seed); 95% interval by the nested paired
bootstrap over seeds and documents (jaxlab.stats.paired_bootstrap_interval); held when the
interval lies above 0, not held when it lies at or below 0, inconclusive otherwise.
Preconditions, fixed in advance: (1) the warm start writes a well-formed JSON record on at
least ``WELL_FORMED_MIN`` = 50% of the held-out documents in every seed (below that, RL would
be learning the format, which the claim is not about); (2) room to rise: the warm start's mean
held-out F1 is at most ``ROOM_MAX`` = 0.95 in every seed; (3) RL had a learning signal: in
every seed some sampled group's rewards differed (else every advantage is 0 and the policy
never moves).

Zero-advantage groups, with and without dynamic sampling: a logged quantity of the one RL run,
not a second arm. Per rollout the loop logs the groups it sampled and how many of them had
equal rewards (all advantages 0): their share is what a batch without dynamic sampling would
hold (such a batch is the first P sampled groups; every round draws prompts from the same
policy), and ``batch_zero_std`` is the share in the batch trained on with dynamic sampling
(groups missing after the last round are filler, advantage 0). A GRPO arm without dynamic
sampling would also measure it, but at another policy after its first update (its own
trajectory), and would double the GPU time; the question is what the filter removes from the
same samples, which one run answers.

Presets:

    smoke  a tiny random byte-level model (1 layer, d 32), documents of difficulty 1 (2 fields)
           in the two shortest layouts (kv, csv; under 600 bytes), a few steps:
           the whole pipeline in about 25 s of CPU time per seed (what the tests run; 2 seeds
           took 2.5 minutes on the 2 shared cores); a random model writes no JSON, so
           precondition (1) fails and the verdict is inconclusive (published: effect 0, every
           sampled group's advantages 0, nothing trained on):
           jaxlab run experiments/extraction_rl.py --preset smoke --seeds 2 --publish
    paper  SmolLM2-135M-Instruct (ChatML), documents of difficulty 2-4 (3-5 fields asked, 1-2
           distractor fields, no OCR noise), 2,000 train / 300 held-out documents per seed,
           40 warm SFT steps of 16 packed rows x 1,024 tokens (lr 2e-5), 100 DAPO steps
           (lr 3e-6, fixed before any run) of 16 documents x 8 samples of up to 128 new
           tokens (reference records: 58 SmolLM2 tokens on average, 95 the longest of 1,100
           documents; prompts 234 on average, 471 the longest) and up to 3 sampling rounds,
           greedy evaluation before and after; 3 seeds. Needs a GPU: on the 2 shared CPU
           cores a pipeline check at minimal sizes (1 SFT step of 2 x 640 tokens, 1 RL step of
           4 samples of 8 tokens, 4 greedy answers) took 5 minutes. Estimated (from
           step and generation counts, not measured) about 15 minutes per seed on one H200,
           45 minutes for 3 seeds: per RL step up to 3 x 128 completions of up to 128 tokens
           and one update on 128 rows of ~600 columns (4 micro-batches of 32 rows: the logits
           of 128 x 600 positions over 49,152 tokens take 15 GB a copy in float32; the
           accumulated loss sums are the same); 40 SFT steps of 16 x 1,024 tokens;
           2 x 300 greedy completions of up to 128 tokens:
           jaxlab run experiments/extraction_rl.py --workdir OUT/extraction_rl \\
               --preset paper --seeds 3 --publish
           (also a line of scripts/gpu_claims.sh). Not yet run at the paper preset.

Seeds change the documents (train and held-out splits), the warm start's data order and the RL
rollouts; the pretrained weights are the same.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.evals.generation import complete, encode_task_prompt, prompts_as_chat
from jaxlab.rl import RLConfig, train_rl
from jaxlab.samplers import SampleConfig
from jaxlab.tasks.documents import DocumentExtraction
from jaxlab.tasks.documents.generator import LAYOUTS
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.interop.models import load_experiment_model

CLAIM = ("DAPO with the field-level F1 as a partial-credit reward raises SmolLM2-135M-Instruct's held-out "
         "field F1 on document extraction over its SFT warm start.")
CLAIM_VERSION = 1
WELL_FORMED_MIN = 0.5  # precondition (1): warm-start well-formed share of held-out documents, every seed
ROOM_MAX = 0.95        # precondition (2): warm-start mean held-out F1, every seed
REPORT_KEYS = ["f1_gain", "warm_f1", "rl_f1", "warm_exact", "rl_exact", "warm_well_formed", "rl_well_formed",
               "zero_adv_sampled", "zero_adv_batch", "groups_sampled_per_step"]
SEED_KEYS = ("seed",)  # the SFT and RL loops take their seeds from it
PRESETS = {
    "smoke": {"model": "tiny-random", "difficulty": (1, 1), "layouts": ("kv", "csv"), "n_train": 32, "n_test": 8,
              "warm_steps": 4, "batch_size": 4, "seq_len": 768, "max_new_tokens": 8, "eval_batch_size": 8,
              "rl.prompts_per_step": 2, "rl.group_size": 4, "rl.max_new_tokens": 8, "rl.max_sample_rounds": 2,
              "rl.loop.steps": 2, "rl.loop.checkpoint_every": 2, "rl.loop.grad_accum": 1, "warm_optim.lr": 3e-3,
              "rl_optim.lr": 1e-3},
    "paper": {"model": "smollm2-135m-instruct"},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "extraction_rl"
    model: str = "smollm2-135m-instruct"  # a name jaxlab.interop.models.load_model takes, or "tiny-random"
    difficulty: tuple[int, int] = (2, 4)  # doc_extract difficulty of train and held-out documents
    layouts: tuple[str, ...] = LAYOUTS  # doc_extract layouts drawn from
    n_train: int = 2000
    n_test: int = 300
    warm_steps: int = 40
    batch_size: int = 16  # SFT rows per step
    seq_len: int = 1024
    warm_optim: OptimConfig = OptimConfig(lr=2e-5, warmup_steps=5, schedule="constant", weight_decay=0.0,
                                          clip_norm=1.0)
    rl: RLConfig = RLConfig(prompts_per_step=16, group_size=8, ppo_epochs=1, max_new_tokens=128, temperature=1.0,
                            eps_low=0.2, eps_high=0.28, aggregation="token-mean", reward="partial",
                            dynamic_sampling=True, max_sample_rounds=3,
                            loop=LoopConfig(steps=100, log_every=1, eval_every=100_000, checkpoint_every=25,
                                            grad_accum=4))  # 4 x 32 rows: bounds SmolLM2's 49,152-way logits
    rl_optim: OptimConfig = OptimConfig(lr=3e-6, warmup_steps=10, schedule="constant", weight_decay=0.0,
                                        clip_norm=1.0)
    max_new_tokens: int = 128  # greedy evaluation
    eval_batch_size: int = 64
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)


def get_config() -> Config:
    return Config()


def extraction_scores(task: DocumentExtraction, examples, texts) -> dict[str, np.ndarray]:
    """Per document: ``f1`` (field F1, the RL reward), ``exact`` (1/0, every field right and
    nothing extra) and ``well_formed`` (1/0, the answer line is a JSON object), float64 [P]."""
    if len(examples) != len(texts):
        raise ValueError(f"{len(examples)} documents but {len(texts)} responses")
    scores = [task.scores(e, t) for e, t in zip(examples, texts)]
    return {"f1": np.array([s["f1"] for s in scores]), "exact": np.array([s["exact"] for s in scores]),
            "well_formed": np.array([task.format_reward(t) for t in texts], np.float64)}


def zero_advantage_shares(groups_sampled, groups_zero_std, batch_zero_std) -> dict[str, float]:
    """From per-rollout logs: ``sampled`` = sum(groups with equal rewards) / sum(groups sampled)
    (the zero-advantage share without dynamic sampling) and ``batch`` = mean over rollouts of the
    trained batch's zero-advantage share (with it)."""
    n, z = np.asarray(groups_sampled, np.float64), np.asarray(groups_zero_std, np.float64)
    if n.size == 0 or n.shape != z.shape or len(batch_zero_std) != n.size:
        raise ValueError(f"need one count of each per rollout, got {n.size}, {z.size}, {len(batch_zero_std)}")
    if np.any(z > n) or np.any(z < 0):
        raise ValueError("zero-advantage groups must be between 0 and the groups sampled")
    return {"sampled": float(z.sum() / max(n.sum(), 1.0)), "batch": float(np.mean(batch_zero_std))}


def greedy_texts(model_cfg, params, tok, examples, cfg: Config) -> list[str]:
    """The greedy completion of every document's prompt (through the chat template when the
    tokenizer has one; the prompts RL trains on)."""
    chat = prompts_as_chat(tok)
    prompts = [encode_task_prompt(tok, e.prompt, chat=chat) for e in examples]
    texts, _ = complete(model_cfg, params, tok, prompts, key=jax.random.key(0), batch_size=cfg.eval_batch_size,
                        progress=False, sample_cfg=SampleConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                                                                stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id))
    return texts


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    workdir = Path(workdir)
    task = DocumentExtraction(train_difficulty=tuple(cfg.difficulty), ood_difficulty=tuple(cfg.difficulty),
                              layouts=tuple(cfg.layouts))
    splits = task.splits(cfg.seed, cfg.n_train, cfg.n_test, 0)
    train, test = splits["train"], splits["test"]
    model_cfg, params0, tok = load_experiment_model(cfg.model, cfg.seed)
    mesh = experiment_mesh(cfg.mesh)

    records = [{"prompt": e.prompt, "response": e.answer} for e in train]
    sft = SFTConfig(batch_size=cfg.batch_size, seq_len=cfg.seq_len, loop=LoopConfig(
        steps=cfg.warm_steps, seed=cfg.seed, log_every=max(cfg.warm_steps // 20, 1), eval_every=100_000,
        checkpoint_every=cfg.warm_steps))
    warm = train_sft(workdir / "warm", records, model_cfg=model_cfg, sft=sft, optim=cfg.warm_optim, mesh=mesh,
                     init_params=params0, progress=progress, tokenizer=tok)
    warm_params = jax.device_get(warm.params)
    warm_texts = greedy_texts(model_cfg, warm_params, tok, test, cfg)

    rl = dataclasses.replace(cfg.rl, loop=dataclasses.replace(cfg.rl.loop, seed=cfg.seed))
    result = train_rl(workdir / "rl", train, model_cfg=model_cfg, rl=rl, optim=cfg.rl_optim, mesh=mesh,
                      init_params=warm_params, progress=progress, tokenizer=tok)
    rl_texts = greedy_texts(model_cfg, jax.device_get(result.params), tok, test, cfg)

    # one record per rollout batch (a step of ppo_epochs > 1 repeats its rollout's metrics)
    rollouts = [r for r in result.records if "train/groups_sampled" in r][::rl.ppo_epochs]
    counts = {k: [r[f"train/{k}"] for r in rollouts]
              for k in ("groups_sampled", "groups_sampled_zero_std", "batch_zero_std", "reward", "sample_rounds")}
    shares = zero_advantage_shares(counts["groups_sampled"], counts["groups_sampled_zero_std"],
                                   counts["batch_zero_std"])
    out = {"n_test": len(test), "rl_steps": rl.loop.steps, "rollouts": len(rollouts)}
    for arm, texts in (("warm", warm_texts), ("rl", rl_texts)):
        s = extraction_scores(task, test, texts)
        for k, v in s.items():
            out[f"{arm}_{k}_per_doc"] = v.tolist()
            out[f"{arm}_{k}"] = float(v.mean())
        out[f"{arm}_examples"] = [{"answer": e.answer, "response": t} for e, t in zip(test[:3], texts[:3])]
    out["f1_gain"] = out["rl_f1"] - out["warm_f1"]
    out.update({"rollout_groups_sampled": counts["groups_sampled"],
                "rollout_groups_zero_std": counts["groups_sampled_zero_std"],
                "rollout_batch_zero_std": counts["batch_zero_std"], "rollout_reward": counts["reward"],
                "zero_adv_sampled": shares["sampled"], "zero_adv_batch": shares["batch"],
                "groups_sampled_per_step": float(np.mean(counts["groups_sampled"]))})
    _plot(out, workdir / "training.png", title=f"{cfg.model}, seed {cfg.seed}")
    out["report"] = _seed_report(out, cfg)
    return out


def _seed_report(r: dict, cfg: Config) -> str:
    rows = [f"| {name} | {r[f'{k}_f1']:.3f} | {r[f'{k}_exact']:.3f} | {r[f'{k}_well_formed']:.3f} |"
            for name, k in (("SFT warm start", "warm"), ("DAPO, field-F1 reward", "rl"))]
    lines = [f"{cfg.model}: {r['n_test']} held-out documents (difficulty {tuple(cfg.difficulty)}), greedy.", "",
             "| model | field F1 | exact record | well-formed JSON |", "|---|---|---|---|", *rows, "",
             f"Zero-advantage groups: {r['zero_adv_sampled']:.3f} of the sampled groups (the share without "
             f"dynamic sampling), {r['zero_adv_batch']:.3f} of the trained batch's groups (with it); "
             f"{r['groups_sampled_per_step']:.1f} groups sampled per step for {cfg.rl.prompts_per_step} kept.", "",
             "![training](training.png)", "", "Greedy answers (first held-out documents):", ""]
    for arm in ("warm", "rl"):
        for ex in r[f"{arm}_examples"]:
            lines.append(f"- {arm}: {ex['response'][:200]!r} (gold {ex['answer'][:200]!r})")
    return "\n".join(lines)


def _plot(r: dict, path: Path, *, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(1, r["rollouts"] + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(x, r["rollout_reward"], marker=".")
    axes[0].axhline(r["warm_f1"], color="#888888", linestyle=":", label="warm start, held-out (greedy)")
    axes[0].axhline(r["rl_f1"], color="#b03a2e", linestyle="--", label="after RL, held-out (greedy)")
    axes[0].set_ylabel("field F1")
    axes[0].set_title("reward of the sampled groups")
    sampled = np.asarray(r["rollout_groups_zero_std"]) / np.maximum(np.asarray(r["rollout_groups_sampled"]), 1)
    axes[1].plot(x, sampled, marker=".", label="sampled groups (without dynamic sampling)")
    axes[1].plot(x, r["rollout_batch_zero_std"], marker=".", label="trained batch (with dynamic sampling)")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("share of groups with all advantages 0")
    axes[1].set_title("zero-advantage groups")
    for ax in axes:
        ax.set_xlabel("rollout batch")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    rl_SP = np.array([r["rl_f1_per_doc"] for r in per_seed], np.float64)
    warm_SP = np.array([r["warm_f1_per_doc"] for r in per_seed], np.float64)
    b = stats.paired_bootstrap_interval(rl_SP, warm_SP)
    formed = [r["warm_well_formed"] for r in per_seed]
    warm_f1 = [r["warm_f1"] for r in per_seed]
    signal = [r["zero_adv_sampled"] for r in per_seed]
    pre = [("the warm start writes well-formed records", all(f >= WELL_FORMED_MIN for f in formed),
            "warm-start well-formed share per seed " + ", ".join(f"{f:.3f}" for f in formed)
            + f" (need >= {WELL_FORMED_MIN})"),
           ("room to rise", all(f <= ROOM_MAX for f in warm_f1),
            "warm-start held-out F1 per seed " + ", ".join(f"{f:.3f}" for f in warm_f1) + f" (need <= {ROOM_MAX})"),
           ("RL had a learning signal", all(s < 1.0 for s in signal),
            "share of sampled groups with all advantages 0, per seed " + ", ".join(f"{s:.3f}" for s in signal)
            + " (need < 1)")]
    return stats.decide(b["effect"], b["low"], b["high"], threshold=0.0, preconditions=pre,
                        test=f"nested paired bootstrap over {b['seeds']} seeds x {b['problems']} held-out documents")


def summarize(results: dict, workdir: Path) -> str:
    lines = ["## Per seed", ""]
    for name, per_seed in results.items():
        for k, r in enumerate(per_seed if isinstance(per_seed, list) else [per_seed]):
            lines.append(f"- seed {k}: field F1 {r['warm_f1']:.3f} -> {r['rl_f1']:.3f}, exact {r['warm_exact']:.3f} "
                         f"-> {r['rl_exact']:.3f}, well-formed {r['warm_well_formed']:.3f} -> "
                         f"{r['rl_well_formed']:.3f}; zero-advantage groups {r['zero_adv_sampled']:.3f} sampled, "
                         f"{r['zero_adv_batch']:.3f} trained ([training]({name}/seed{k}/training.png))")
    return "\n".join(lines) + "\n"
