"""Likelihood displacement in DPO and the CHES score (Razin et al. 2024, "Unintentional
Unalignment: Likelihood Displacement in Direct Preference Optimization").

Data. Prompts are additions "a+b=" (``jaxlab.tasks`` arithmetic, ``digits``-digit operands);
the chosen response is the sum. The rejected response is, for half of the pairs, a *near*
miss (the sum plus one: mostly the same digits, so the two responses look alike to the model)
and for the other half a *far* one (the digits of the sum written as the letters a-j: other
tokens). Which pairs score high on CHES is not given to the model; it only sees the pairs.

Protocol.
  1. SFT: a byte-level model learns both response styles, prompt -> chosen and prompt ->
     rejected (cross-entropy, ``sft_steps``), so both have substantial probability.
  2. CHES of every pair under the SFT model (``jaxlab.analysis.displacement.model_pair_ches``,
     the hidden states the unembedding reads, summed over each response).
  3. DPO from the SFT model (reference = SFT model) on all pairs for ``dpo_steps``, logging
     the mean log pi(y+) and log pi(y-) over all pairs every ``eval_every`` steps. The
     displacement of a pair is its chosen log-prob drop, log pi_0(y+) - log pi_end(y+).
  4. DPO again, from the same SFT model with the same settings, on the pairs that remain after
     dropping the ``drop_fraction`` with the highest CHES; the displacement of the kept pairs
     is compared between the two runs (the same pairs in both).

Criterion (fixed before running). The claim holds when (a) in the full run the mean chosen
and the mean rejected log-probs both end below their start, (b) the Spearman correlation
between a pair's CHES and its displacement is positive, and (c) the kept pairs' mean
displacement is smaller in the filtered run than in the full run.

    jaxlab run experiments/dpo_likelihood_displacement.py --workdir runs/dpo_ld
    jaxlab run experiments/dpo_likelihood_displacement.py --set model.d_model=256 \\
        --set model.n_layers=6 --set model.head_dim=64 --set model.mlp_dim=768 \\
        --set n_pairs=4096 --set sft_steps=3000 --set dpo_steps=1000 --set digits=1,4   # GPU
"""

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import tasks
from jaxlab.analysis.displacement import model_pair_ches
from jaxlab.data.chat import preference_batch
from jaxlab.models import transformer
from jaxlab.train.dpo import DPOConfig, pair_sequence_logprobs, train_dpo
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.plots import plot_curves
from jaxlab.train.sft import SFTConfig, train_sft

CLAIM = ("During DPO the log-probabilities of both the chosen and the rejected responses fall; "
         "pairs with a higher CHES score displace more; dropping the top-CHES pairs reduces the "
         "displacement of the remaining pairs.")
REPORT_KEYS = ["chosen_logp_start", "chosen_logp_end", "rejected_logp_start", "rejected_logp_end",
               "ches_spearman", "kept_displacement_full", "kept_displacement_filtered"]
LETTERS = "abcdefghij"


DEFAULT_MODEL = transformer.Config(
    vocab_size=264, d_model=64, n_layers=2, n_heads=2, n_kv_heads=2, head_dim=32, mlp_dim=192,
    scan_unroll=2)
DEFAULT_SFT_OPTIM = OptimConfig(lr=3e-3, warmup_steps=30, weight_decay=0.0)
DEFAULT_DPO = DPOConfig(loss_type="dpo", beta=0.1, batch_size=32, seq_len=24,
                        loop=LoopConfig(steps=150, log_every=10, eval_every=25,
                                        checkpoint_every=1000))
DEFAULT_DPO_OPTIM = OptimConfig(lr=1e-3, warmup_steps=10, schedule="constant", weight_decay=0.0)


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "dpo_likelihood_displacement"
    model: transformer.Config = DEFAULT_MODEL
    digits: tuple[int, ...] = (1, 2)
    n_pairs: int = 256
    sft_steps: int = 300
    sft_optim: OptimConfig = DEFAULT_SFT_OPTIM
    dpo: DPOConfig = DEFAULT_DPO
    dpo_optim: OptimConfig = DEFAULT_DPO_OPTIM
    drop_fraction: float = 0.25
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)  # --set mesh.data=8 or mesh.fsdp=8: 8 devices


def get_config() -> Config:
    return Config()


def make_pairs(digits: tuple[int, ...], n: int, seed: int) -> list[dict]:
    """Half near pairs (rejected = sum + 1), half far pairs (rejected = the sum's digits as
    letters), alternating; each record also names its ``kind``."""
    task = tasks.get("arithmetic", ops="+", train_difficulty=tuple(digits),
                     ood_difficulty=(max(digits) + 1,) * 2)
    pairs = []
    for i, e in enumerate(task.splits(seed, n, 0, 0)["train"]):
        total = int(e.answer)
        near = i % 2 == 0
        rejected = str(total + 1) if near else "".join(LETTERS[int(c)] for c in e.answer)
        pairs.append({"prompt": e.prompt, "chosen": e.answer, "rejected": rejected,
                      "kind": "near" if near else "far"})
    return pairs


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (ties broken by order; the scores here are continuous)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def _dpo_run(cfg, workdir, pairs, sft_params, progress):
    mesh = experiment_mesh(cfg.mesh)
    curve = []

    def evaluate(params, step):
        lp = pair_sequence_logprobs(params, cfg.model, pairs, seq_len=cfg.dpo.seq_len)
        out = {"chosen_logp": float(lp["chosen"].mean()), "rejected_logp": float(lp["rejected"].mean())}
        curve.append({"step": step, **{f"val/{k}": v for k, v in out.items()}})
        return out

    result = train_dpo(workdir, pairs, model_cfg=cfg.model, dpo=cfg.dpo, optim=cfg.dpo_optim,
                       mesh=mesh, init_params=sft_params, evaluate=evaluate, progress=progress)
    return result, [r for r in result.records if "val/chosen_logp" in r]


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    pairs = make_pairs(cfg.digits, cfg.n_pairs, cfg.seed)
    mesh = experiment_mesh(cfg.mesh)
    sft_records = [{"prompt": p["prompt"], "response": p[k]} for p in pairs for k in ("chosen", "rejected")]
    sft = train_sft(workdir / "sft", sft_records, model_cfg=cfg.model, optim=cfg.sft_optim, mesh=mesh,
                    sft=SFTConfig(batch_size=32, seq_len=cfg.dpo.seq_len,
                                  loop=LoopConfig(steps=cfg.sft_steps, seed=cfg.seed,
                                                  eval_every=50, checkpoint_every=cfg.sft_steps)),
                    progress=progress)
    sft_params = sft.state.params
    rows = preference_batch(pairs, seq_len=cfg.dpo.seq_len)
    ches = np.asarray(model_pair_ches(sft_params, cfg.model, rows["chosen"], rows["rejected"]))
    ches_ln = np.asarray(model_pair_ches(sft_params, cfg.model, rows["chosen"], rows["rejected"],
                                         length_normalized=True))
    start = pair_sequence_logprobs(sft_params, cfg.model, pairs, seq_len=cfg.dpo.seq_len)

    full, full_curve = _dpo_run(cfg, workdir / "dpo_full", pairs, sft_params, progress)
    end = pair_sequence_logprobs(full.state.params, cfg.model, pairs, seq_len=cfg.dpo.seq_len)
    displacement = start["chosen"] - end["chosen"]  # > 0: the chosen log-prob fell
    rho = spearman(ches, displacement)

    n_drop = round(cfg.drop_fraction * len(pairs))
    order = np.argsort(-ches)
    kept = np.sort(order[n_drop:])
    kept_pairs = [pairs[i] for i in kept]
    filtered, filtered_curve = _dpo_run(cfg, workdir / "dpo_filtered", kept_pairs, sft_params, progress)
    end_f = pair_sequence_logprobs(filtered.state.params, cfg.model, kept_pairs, seq_len=cfg.dpo.seq_len)
    kept_full = float(displacement[kept].mean())
    kept_filtered = float((start["chosen"][kept] - end_f["chosen"]).mean())

    kinds = np.asarray([p["kind"] for p in pairs])
    plot_curves({"full": full_curve, "filtered": filtered_curve}, ["val/chosen_logp", "val/rejected_logp"],
                workdir / "logps.png", title="mean log-prob of the DPO pairs", ylabel="log pi(y | x)")
    results = {
        "chosen_logp_start": float(start["chosen"].mean()),
        "chosen_logp_end": float(end["chosen"].mean()),
        "rejected_logp_start": float(start["rejected"].mean()),
        "rejected_logp_end": float(end["rejected"].mean()),
        "margin_start": float((start["chosen"] - start["rejected"]).mean()),
        "margin_end": float((end["chosen"] - end["rejected"]).mean()),
        "ches_spearman": rho,
        "ches_length_normalized_spearman": spearman(ches_ln, displacement),
        "ches_near_mean": float(ches[kinds == "near"].mean()),
        "ches_far_mean": float(ches[kinds == "far"].mean()),
        "displacement_near": float(displacement[kinds == "near"].mean()),
        "displacement_far": float(displacement[kinds == "far"].mean()),
        "dropped_near_fraction": float(np.mean(kinds[order[:n_drop]] == "near")) if n_drop else 0.0,
        "kept_displacement_full": kept_full,
        "kept_displacement_filtered": kept_filtered,
        "n_pairs": len(pairs), "n_kept": len(kept_pairs),
    }
    held, text = verdict(results)
    results["report"] = "\n".join([
        (f"{len(pairs)} addition pairs (half near misses, half letter-spelled), SFT {cfg.sft_steps} "
        f"steps on both styles, then {cfg.dpo.loss_type.upper()} (beta {cfg.dpo.beta}, lr "
        f"{cfg.dpo_optim.lr}, {cfg.dpo.loop.steps} steps). Log-probs are summed over the response "
        f"(+ EOS), means over all pairs."), "",
        "| | start (SFT) | end (DPO) |", "|---|---|---|",
        f"| mean log pi(y+) | {results['chosen_logp_start']:.3f} | {results['chosen_logp_end']:.3f} |",
        f"| mean log pi(y-) | {results['rejected_logp_start']:.3f} | {results['rejected_logp_end']:.3f} |",
        f"| mean margin | {results['margin_start']:.3f} | {results['margin_end']:.3f} |", "",
        (f"CHES (SFT model): near pairs {results['ches_near_mean']:.1f}, far pairs "
        f"{results['ches_far_mean']:.1f}; chosen log-prob drop: near {results['displacement_near']:.3f}, "
        f"far {results['displacement_far']:.3f}; Spearman(CHES, drop) = {rho:.3f} (with the "
        f"length-normalised CHES, not part of the criterion: "
        f"{results['ches_length_normalized_spearman']:.3f})."), "",
        (f"Dropping the top {cfg.drop_fraction:.0%} by CHES ({n_drop} pairs, "
        f"{results['dropped_near_fraction']:.0%} of them near): the kept pairs' mean chosen "
        f"log-prob drop is {kept_full:.3f} in the full run and {kept_filtered:.3f} in the "
        f"filtered run."), "", "![log-probs](logps.png)", "",
        f"**Verdict: the claim {'held' if held else 'did not hold'}** ({text}).",
    ])
    return results


def verdict(r: dict) -> tuple[bool, str]:
    both_fall = (r["chosen_logp_end"] < r["chosen_logp_start"]
                 and r["rejected_logp_end"] < r["rejected_logp_start"])
    correlated = r["ches_spearman"] > 0
    reduced = r["kept_displacement_filtered"] < r["kept_displacement_full"]
    text = (f"(a) both fall: {both_fall} (chosen {r['chosen_logp_start']:.3f} -> "
            f"{r['chosen_logp_end']:.3f}, rejected {r['rejected_logp_start']:.3f} -> "
            f"{r['rejected_logp_end']:.3f}); (b) Spearman(CHES, displacement) = "
            f"{r['ches_spearman']:.3f}; (c) kept-pair displacement {r['kept_displacement_full']:.3f} "
            f"(full) vs {r['kept_displacement_filtered']:.3f} (filtered)")
    return both_fall and correlated and reduced, text


def check(results_by_variant: dict) -> tuple[bool, str]:
    (r,) = results_by_variant.values()
    return verdict(r)
