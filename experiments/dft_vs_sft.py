"""DFT vs SFT on multi-digit addition (Wu et al. 2025, "On the Generalization of SFT: A
Reinforcement Learning Perspective with Reward Rectification").

Task: ``jaxlab.tasks`` "arithmetic" with ``ops="+"``; train and in-distribution test problems
have operands of ``train_digits`` digits, the out-of-distribution (OOD) split operands of
``ood_digits`` digits (longer than any seen in training). The training text is prompt + answer
+ EOS; accuracy is the exact-match rate of the greedy answer under the task's verifier.

Protocol. One byte-level model is trained with cross-entropy (CE) for ``warm_steps`` (DFT
weights each token by its own probability, so from scratch, p ~ 1/V, it barely moves: it is a
fine-tuning method). From that shared checkpoint two arms continue for ``steps`` steps on the
same data order, with the same optimiser and learning rate: SFT (CE) and DFT. Both are
evaluated every ``eval_every`` steps (and at the shared start) on the test and OOD splits.

Criterion (fixed before running). "DFT converges faster" = DFT's mean in-distribution test
accuracy over the evaluation points of the continuation (the area under its accuracy-vs-step
curve) is higher than SFT's; "generalises better OOD" = DFT's final OOD accuracy is higher than
SFT's. The claim holds when both do.

    jaxlab run experiments/dft_vs_sft.py --workdir runs/dft_vs_sft
    jaxlab run experiments/dft_vs_sft.py --set model.d_model=256 --set model.n_layers=6 \\
        --set model.head_dim=64 --set model.mlp_dim=768 --set warm_steps=2000 --set steps=4000 \\
        --set n_train=20000 --set train_digits=1,5 --set ood_digits=6,7       # larger (GPU)
"""


import dataclasses
import functools
from pathlib import Path

import jax
import numpy as np

from jaxlab import tasks
from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig, generate, pad_prompts
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.plots import plot_curves
from jaxlab.train.sft import SFTConfig, train_sft

CLAIM = ("DFT converges faster than SFT (higher mean in-distribution accuracy over the "
         "continuation) and generalises better out of distribution (higher final OOD accuracy).")
REPORT_KEYS = ["warm_test_accuracy", "sft_test_accuracy", "dft_test_accuracy", "sft_test_auc",
               "dft_test_auc", "sft_ood_accuracy", "dft_ood_accuracy"]


DEFAULT_MODEL = transformer.Config(
    vocab_size=264, d_model=96, n_layers=2, n_heads=2, n_kv_heads=2, head_dim=48, mlp_dim=256,
    scan_unroll=2)
DEFAULT_OPTIM = OptimConfig(
    lr=2e-3, warmup_steps=30, schedule="constant", weight_decay=0.0, clip_norm=1.0)


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "dft_vs_sft"
    model: transformer.Config = DEFAULT_MODEL
    optim: OptimConfig = DEFAULT_OPTIM
    train_digits: tuple[int, ...] = (1, 2)
    ood_digits: tuple[int, ...] = (3, 3)
    n_train: int = 3000  # of the 4,150 distinct 1-2 digit sums (a+b and b+a are one problem)
    n_test: int = 200
    n_ood: int = 200
    warm_steps: int = 300
    steps: int = 400
    eval_every: int = 50
    batch_size: int = 32
    seq_len: int = 64
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)  # --set mesh.data=8 or mesh.fsdp=8: 8 devices


def get_config() -> Config:
    return Config()



def greedy_accuracy(params, model_cfg, task, examples, *, max_new_tokens: int,
                    tokenizer: Tokenizer = BYTES) -> float:
    """Exact-match accuracy of greedy answers to ``examples`` under ``task.verify``."""
    tok = tokenizer
    tokens, mask = pad_prompts([encode_prompt(e.prompt, tok) for e in examples], pad_id=tok.pad_id)
    out = generate(params, model_cfg, tokens, mask, jax.random.key(0),
                   SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                                stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id))
    toks, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    answers = [tok.decode(toks[i, :lengths[i]], stop_at_eos=True) for i in range(len(examples))]
    return float(np.mean([task.verify(e, a) for e, a in zip(examples, answers)]))


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    task = tasks.get("arithmetic", ops="+", train_difficulty=tuple(cfg.train_digits),
                     ood_difficulty=tuple(cfg.ood_digits))
    splits = task.splits(cfg.seed, cfg.n_train, cfg.n_test, cfg.n_ood)
    records = [{"prompt": e.prompt, "response": e.answer} for e in splits["train"]]
    max_new = 2 * max(cfg.ood_digits) + 3
    mesh = experiment_mesh(cfg.mesh)

    def evaluate(params, step):
        acc = functools.partial(greedy_accuracy, params, cfg.model, task, max_new_tokens=max_new)
        return {"test_accuracy": acc(splits["test"]), "ood_accuracy": acc(splits["ood"])}

    def sft_cfg(loss, steps):
        return SFTConfig(loss=loss, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                         loop=LoopConfig(steps=steps, seed=cfg.seed, log_every=10,
                                         eval_every=cfg.eval_every, checkpoint_every=max(steps, 1)))

    warm = train_sft(workdir / "warm", records, model_cfg=cfg.model, sft=sft_cfg("ce", cfg.warm_steps),
                     optim=cfg.optim, mesh=mesh, progress=progress)
    start = evaluate(warm.state.params, 0)
    # The continuation: no warmup again, the same constant learning rate in both arms.
    optim = dataclasses.replace(cfg.optim, warmup_steps=0)
    arms, curves = {}, {}
    for loss, label in (("ce", "sft"), ("dft", "dft")):
        result = train_sft(workdir / label, records, model_cfg=cfg.model, sft=sft_cfg(loss, cfg.steps),
                           optim=optim, mesh=mesh, init_params=warm.state.params,
                           evaluate=evaluate, progress=progress)
        evals = [r for r in result.records if "val/test_accuracy" in r]
        curves[label] = [{"step": 0, "val/test_accuracy": start["test_accuracy"],
                          "val/ood_accuracy": start["ood_accuracy"]}] + evals
        arms[label] = {
            "test_accuracy": result.last_eval["test_accuracy"],
            "ood_accuracy": result.last_eval["ood_accuracy"],
            "test_auc": float(np.mean([r["val/test_accuracy"] for r in evals])),
            "test_curve": [[r["step"], r["val/test_accuracy"]] for r in curves[label]],
            "ood_curve": [[r["step"], r["val/ood_accuracy"]] for r in curves[label]],
        }
    plot_curves(curves, ["val/test_accuracy", "val/ood_accuracy"], workdir / "accuracy.png",
                title="DFT vs SFT after a shared CE warm start", ylabel="exact-match accuracy")
    results = {"warm_test_accuracy": start["test_accuracy"], "warm_ood_accuracy": start["ood_accuracy"]}
    for label, arm in arms.items():
        results.update({f"{label}_{k}": v for k, v in arm.items()})
    held, text = verdict(results)
    results["report"] = "\n".join([
        (f"Arithmetic (+), train/test operands {tuple(cfg.train_digits)} digits, OOD "
        f"{tuple(cfg.ood_digits)} digits; CE warm start {cfg.warm_steps} steps, then "
        f"{cfg.steps} steps of each arm at lr {cfg.optim.lr}."), "",
        "| arm | test acc (final) | test acc (mean over evals) | OOD acc (final) |",
        "|---|---|---|---|",
        f"| warm start | {start['test_accuracy']:.3f} | - | {start['ood_accuracy']:.3f} |",
        *[f"| {k.upper()} | {a['test_accuracy']:.3f} | {a['test_auc']:.3f} | {a['ood_accuracy']:.3f} |"
          for k, a in arms.items()],
        "", "![accuracy](accuracy.png)", "",
        f"**Verdict: the claim {'held' if held else 'did not hold'}** ({text}).",
    ])
    return results


def verdict(r: dict) -> tuple[bool, str]:
    faster = r["dft_test_auc"] > r["sft_test_auc"]
    ood = r["dft_ood_accuracy"] > r["sft_ood_accuracy"]
    text = (f"mean test accuracy DFT {r['dft_test_auc']:.3f} vs SFT {r['sft_test_auc']:.3f} "
            f"({'faster' if faster else 'not faster'}); final OOD accuracy DFT "
            f"{r['dft_ood_accuracy']:.3f} vs SFT {r['sft_ood_accuracy']:.3f} "
            f"({'better' if ood else 'not better'})")
    return faster and ood, text


def check(results_by_variant: dict) -> tuple[bool, str]:
    (r,) = results_by_variant.values()
    return verdict(r)
