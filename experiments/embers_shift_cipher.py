"""Shift ciphers and output probability (McCoy et al. 2023, "Embers of Autoregression:
Understanding Large Language Models Through the Problem They are Trained to Solve").

The paper predicts an autoregressive model's accuracy from the probability of the text it
must produce, even on a deterministic task: GPT-4 decodes a shift cipher with 51% accuracy
when the plaintext is high-probability text and 13% when it is low-probability text, and
decodes rot-13 (frequent on the internet) far better than other shifts.

Task (:mod:`jaxlab.tasks.cipher`, ``shift_cipher``): 'Decode this rot-k text: "..."'. The
high-probability plaintext is a window of ``words`` consecutive words of the embedded corpus;
its low-probability twin is the same window with the letters of every word shuffled (same
lengths and letters): one generator state gives the pair, so high and low are paired.

The model. SmolLM2-135M-Instruct does not decode shift ciphers at all (a pilot on 8 rot-13
words before the claim was fixed, with a longer prompt: 0 of 8; it mostly writes the
ciphertext back), so a floor
would decide nothing. The claim is therefore about a byte model trained here, as the paper
tells the story: (1) a ``byte_model`` pretrained ``pretrain_steps`` steps on the embedded corpus
(:func:`jaxlab.train.loop.pretrain_byte_model`): its prior over text, under which the real
words are likely and the shuffled ones are not; (2) fine-tuned ``sft_steps`` SFT steps on
shift-cipher decoding with the shifts ``shifts`` drawn with weights ``shift_weights`` (rot-13
over-represented, as on the internet) and the plaintexts half high, half low, so the
fine-tuning data favour neither kind and any gap comes from the pretrained prior. SmolLM2 is
still asked ``n_probe`` rot-13 pairs, and its accuracy is reported (not part of the verdict).

Protocol per seed: ``n_pairs`` test pairs per shift (disjoint from the training prompts),
greedy answers (at most ``max_chars`` + 8 bytes) scored by the task's verifier; the
log-probability of each plaintext under the pretrained model (bits per character, before
fine-tuning) is recorded.

Claim (fixed before any run, version 1): the fine-tuned byte model decodes high-probability
plaintext more accurately than low-probability plaintext. Effect = accuracy(high) -
accuracy(low) over every test pair of every shift (paired: pair p's high and low twins);
95% interval: nested paired bootstrap over seeds x pairs
(:func:`jaxlab.stats.paired_bootstrap_interval`). Threshold 0: held when the interval lies
above 0, not held when it lies at or below 0, inconclusive otherwise. Preconditions: the
model decodes at all and is not at its ceiling: the pooled accuracy over both kinds is in
[0.10, 0.95]. Reported beside it: accuracy(rot-13) - mean accuracy(other shifts) with a nested
two-sample bootstrap interval, accuracy by shift x kind, and accuracy by pretrained
log-probability quartile (the paper's "accuracy follows output probability").

Presets.
  smoke: tiny byte models, a few steps, 4 pairs per shift and a tiny random stand-in for the
    probe; seconds. The tiny model decodes nothing: inconclusive by the precondition.
  paper: the quickstart byte model, 250 pretraining steps (16 rows of 128 bytes) then 500
    SFT steps (16 packed rows of 128 bytes, about 2 problems a row) on 8000 drawn problems
    (those equal to a test prompt dropped), shifts (1, 3, 13) with weights (0.25, 0.25, 0.5),
    1-2 word messages of at most 12 characters, 64 pairs per shift; SmolLM2 probe on 16
    rot-13 pairs. Sized for the shared CPUs (a 16 x 128 step took about 2 s under a load
    average near 15); it is a small training budget, and a model that decodes nothing gives
    an inconclusive verdict by the precondition. Measured: about 46 minutes for 2 seeds, with
    the machine's load average between 15 and 30 (other jobs shared the 2 cores).

    jaxlab run experiments/embers_shift_cipher.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/embers_shift_cipher.py --preset paper --seeds 2 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import stats
from jaxlab.evals.generation import complete, encode_task_prompt, prompts_as_chat
from jaxlab.samplers import SampleConfig
from jaxlab.tasks.base import stable_hash
from jaxlab.tasks.cipher import PLAINTEXTS, ShiftCipher

CLAIM = ("A byte model pretrained on text and fine-tuned on shift-cipher decoding decodes "
         "high-probability plaintext (real text) more accurately than low-probability plaintext "
         "(the same words with their letters shuffled).")
CLAIM_VERSION = 1
ACCURACY_RANGE = (0.10, 0.95)
REPORT_KEYS = ["high_minus_low", "accuracy_high", "accuracy_low", "rot13_minus_other", "probe_accuracy_high"]
PRESETS = {
    "smoke": {"byte_model": "tiny", "pretrain_steps": 10, "sft_steps": 10, "n_train": 64, "n_pairs": 4,
              "probe_model": "tiny-random", "n_probe": 2, "batch_size": 8},
    "paper": {"byte_model": "quickstart", "pretrain_steps": 250, "sft_steps": 500, "n_train": 8000, "n_pairs": 64,
              "seq_len": 128, "max_chars": 12, "probe_model": "smollm2-135m-instruct", "n_probe": 16,
              "batch_size": 16},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "embers_shift_cipher"
    byte_model: str = "quickstart"          # "quickstart" (configs/models.py) or "tiny"
    pretrain_steps: int = 250               # 0: no pretraining, a random init (the tests)
    sft_steps: int = 500
    seq_len: int = 128                      # rows of pretraining and of packed SFT
    sft_lr: float = 2e-3
    n_train: int = 8000                     # SFT problems (shift by shift_weights, half high, half low)
    shifts: tuple[int, ...] = (1, 3, 13)
    shift_weights: tuple[float, ...] = (0.25, 0.25, 0.5)
    words: tuple[int, int] = (1, 2)         # words per message
    max_chars: int = 12
    n_pairs: int = 64                       # test pairs (high, low) per shift
    probe_model: str = "smollm2-135m-instruct"   # asked rot-13 pairs, reported only ("tiny-random" in smoke)
    n_probe: int = 16
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        if self.byte_model not in ("quickstart", "tiny"):
            raise ValueError(f"byte_model must be 'quickstart' or 'tiny', got {self.byte_model!r}")
        if 13 not in self.shifts or len(self.shifts) < 2 or len(set(self.shifts)) != len(self.shifts):
            raise ValueError(f"shifts={self.shifts} must be distinct and hold 13 and at least one other shift")
        if len(self.shift_weights) != len(self.shifts) or min(self.shift_weights) <= 0:
            raise ValueError(f"shift_weights={self.shift_weights} must be one positive weight per shift {self.shifts}")
        if self.pretrain_steps < 0:
            raise ValueError(f"pretrain_steps must be >= 0, got {self.pretrain_steps}")
        if self.n_pairs < 2 or self.n_train < 2 or self.n_probe < 0:
            raise ValueError(f"need n_pairs >= 2, n_train >= 2 and n_probe >= 0, got {self.n_pairs}, {self.n_train}, "
                             f"{self.n_probe}")


def get_config() -> Config:
    return Config()


def pairs(cfg: Config, shift: int, n: int, stream: str) -> list[dict]:
    """``n`` (high, low) example pairs of one shift: pair i of stream s draws both twins from
    the generator ``default_rng([seed, stable_hash(stream), shift, i])`` (so they hold the same
    words, module docstring)."""
    low, high = cfg.words
    out = []
    for i in range(n):
        d = low + i % (high - low + 1)
        key = [int(cfg.seed), stable_hash(stream), int(shift), i]
        out.append({kind: ShiftCipher(shift=shift, plaintext=kind, max_chars=cfg.max_chars,
                                      train_difficulty=(low, high), ood_difficulty=(low, high)
                                      ).generate(np.random.default_rng(key), d) for kind in PLAINTEXTS})
    return out


def training_examples(cfg: Config) -> list:
    """``n_train`` problems: shifts drawn with ``shift_weights``, kinds alternating high / low,
    from a stream of their own; none repeats a test prompt."""
    rng = np.random.default_rng([int(cfg.seed), stable_hash("train")])
    w = np.asarray(cfg.shift_weights, np.float64)
    shifts = rng.choice(np.asarray(cfg.shifts), size=cfg.n_train, p=w / w.sum())
    test = {e.prompt for s in cfg.shifts for p in pairs(cfg, s, cfg.n_pairs, "test") for e in p.values()}
    low, high = cfg.words
    out = []
    for i, shift in enumerate(shifts):
        task = ShiftCipher(shift=int(shift), plaintext=PLAINTEXTS[i % 2], max_chars=cfg.max_chars,
                           train_difficulty=(low, high), ood_difficulty=(low, high))
        e = task.generate(rng, int(rng.integers(low, high + 1)))
        if e.prompt not in test:
            out.append(e)
    return out


def greedy_texts(model_cfg, params, tok, prompts: list[str], *, max_new_tokens: int, batch_size: int,
                 progress: bool = False) -> list[str]:
    """Greedy completions of task prompts (chat template for an instruct tokenizer)."""
    chat = prompts_as_chat(tok)
    ids = [encode_task_prompt(tok, p, chat=chat) for p in prompts]
    texts, _ = complete(model_cfg, params, tok, ids, key=jax.random.key(0), batch_size=batch_size,
                        progress=progress, sample_cfg=SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                                                                   stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id))
    return texts


def bits_per_char(model_cfg, params, texts: list[str]) -> np.ndarray:
    """-log2 p(text | BOS) / len(text) of each text under a byte model, float64 [N]."""
    from jaxlab.data.tokenizer import BYTES
    from jaxlab.losses.lm import sequence_logprobs
    from jaxlab.models import transformer

    rows = [BYTES.encode(t, bos=True) for t in texts]
    T = max(len(r) for r in rows)
    tokens_NT = np.full((len(rows), T), BYTES.pad_id, np.int32)
    mask_NT = np.zeros((len(rows), T), np.float32)
    for i, r in enumerate(rows):
        tokens_NT[i, :len(r)] = r
        mask_NT[i, 1:len(r)] = 1.0
    logits = jax.jit(lambda p, x: transformer.apply(p, x, model_cfg))(params, jnp.asarray(tokens_NT[:, :-1]))
    logp_N, count_N = sequence_logprobs(logits, jnp.asarray(tokens_NT[:, 1:]), jnp.asarray(mask_NT[:, 1:]))
    return np.asarray(-logp_N / np.log(2.0) / np.maximum(np.asarray(count_N), 1.0), np.float64)


def _byte_models(cfg: Config, workdir: Path, train: list, progress: bool):
    """(model cfg, pretrained params, fine-tuned params, SFT losses); resumable in workdir."""
    from configs import models
    from jaxlab.data.tokenizer import BYTES
    from jaxlab.models import transformer
    from jaxlab.train.fit import LoopConfig
    from jaxlab.train.loop import pretrain_byte_model
    from jaxlab.train.optim import OptimConfig
    from jaxlab.train.sft import SFTConfig, train_sft
    from jaxlab.train.sharding import MeshConfig, experiment_mesh

    if cfg.byte_model == "tiny":
        from jaxlab.interop.models import TINY_CONFIG as mcfg
    else:
        mcfg = models.get("quickstart")
    if cfg.pretrain_steps == 0:   # no prior (the tests): a random init
        base = transformer.init(mcfg, jax.random.key(cfg.seed))
    elif cfg.byte_model == "tiny":
        base = pretrain_byte_model(workdir / "pretrain", mcfg, steps=cfg.pretrain_steps, seed=cfg.seed,
                                   batch_size=8, seq_len=64, progress=progress)
    else:
        base = pretrain_byte_model(workdir / "pretrain", mcfg, steps=cfg.pretrain_steps, seed=cfg.seed,
                                   seq_len=cfg.seq_len, progress=progress)
    base = jax.device_get(base)
    records = [{"prompt": e.prompt, "response": e.answer} for e in train]
    sft = SFTConfig(batch_size=16, seq_len=cfg.seq_len, loop=LoopConfig(
        steps=cfg.sft_steps, seed=cfg.seed, log_every=max(cfg.sft_steps // 10, 1), eval_every=cfg.sft_steps,
        checkpoint_every=cfg.sft_steps))
    optim = OptimConfig(lr=cfg.sft_lr, warmup_steps=max(1, min(50, cfg.sft_steps // 10)), schedule="cosine",
                        weight_decay=0.1)
    result = train_sft(workdir / "sft", records, model_cfg=mcfg, sft=sft, optim=optim,
                       mesh=experiment_mesh(MeshConfig(data=1)), init_params=base, progress=progress,
                       tokenizer=BYTES)
    losses = [r["train/loss"] for r in result.records if "train/loss" in r]
    return mcfg, base, jax.device_get(result.params), losses


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    from jaxlab.data.tokenizer import BYTES
    from jaxlab.interop.models import load_experiment_model

    test = {s: pairs(cfg, s, cfg.n_pairs, "test") for s in cfg.shifts}
    train = training_examples(cfg)
    mcfg, base, tuned, losses = _byte_models(cfg, workdir / "byte_model", train, progress)
    items = [(s, i, kind, p[kind]) for s in cfg.shifts for i, p in enumerate(test[s]) for kind in PLAINTEXTS]
    texts = greedy_texts(mcfg, tuned, BYTES, [e.prompt for *_, e in items], max_new_tokens=cfg.max_chars + 8,
                         batch_size=cfg.batch_size, progress=progress)
    bpc = bits_per_char(mcfg, base, [e.answer for *_, e in items])
    task = ShiftCipher()
    rows = [{"shift": s, "pair": i, "kind": kind, "plaintext": e.answer, "bits_per_char": float(b),
             "correct": int(task.verify(e, t)), "well_formed": int(task.format_reward(t)), "response": t[:60]}
            for (s, i, kind, e), t, b in zip(items, texts, bpc, strict=True)]

    probe = []
    if cfg.n_probe:
        pcfg, pparams, ptok = load_experiment_model(cfg.probe_model, cfg.seed)
        probe_items = [(i, kind, p[kind]) for i, p in enumerate(pairs(cfg, 13, cfg.n_probe, "probe"))
                       for kind in PLAINTEXTS]
        ptexts = greedy_texts(pcfg, pparams, ptok, [e.prompt for *_, e in probe_items],
                              max_new_tokens=cfg.max_chars + 8,
                              batch_size=cfg.batch_size, progress=progress)
        probe = [{"pair": i, "kind": kind, "plaintext": e.answer, "correct": int(task.verify(e, t)),
                  "response": t[:80]} for (i, kind, e), t in zip(probe_items, ptexts, strict=True)]
        del pparams

    out = {"rows": rows, "probe_rows": probe, "sft_first_loss": losses[0], "sft_last_loss": losses[-1],
           "n_train": len(train)}
    for kind in PLAINTEXTS:
        out[f"accuracy_{kind}"] = float(np.mean([r["correct"] for r in rows if r["kind"] == kind]))
        out[f"probe_accuracy_{kind}"] = (float(np.mean([r["correct"] for r in probe if r["kind"] == kind]))
                                         if probe else None)
    out["high_minus_low"] = out["accuracy_high"] - out["accuracy_low"]
    acc_shift = {s: float(np.mean([r["correct"] for r in rows if r["shift"] == s])) for s in cfg.shifts}
    out["rot13_minus_other"] = acc_shift[13] - float(np.mean([a for s, a in acc_shift.items() if s != 13]))
    plot_accuracy(rows, workdir / "accuracy.png", title=f"{cfg.byte_model} byte model, seed {cfg.seed}")
    out["report"] = "\n".join([
        f"{cfg.byte_model} byte model: {cfg.pretrain_steps} pretraining steps on the corpus, then {cfg.sft_steps} SFT "
        f"steps on {len(train)} cipher problems (shifts {cfg.shifts}, weights {cfg.shift_weights}; loss "
        f"{losses[0]:.3f} -> {losses[-1]:.3f}); {cfg.n_pairs} test pairs per shift.", "",
        accuracy_markdown(rows), "", probability_markdown(rows), "", probe_markdown(probe, cfg.probe_model), "",
        "![accuracy by shift, kind and probability](accuracy.png)"])
    return out


# ---------------------------------------------------------------- tables and plots

def _cell(values) -> str:
    k, n = int(np.sum(values)), len(values)
    if n == 0:
        return "-"
    lo, hi = stats.wilson_interval(k, n)
    return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}] (n={n})"


def accuracy_markdown(rows: list[dict]) -> str:
    """Shift x plaintext-kind accuracy (95% Wilson), with an all-shifts row."""
    shifts = sorted({r["shift"] for r in rows})
    lines = ["| shift | high-probability | low-probability | well formed |", "|---|---|---|---|"]
    for s in [*shifts, "all"]:
        sel = [r for r in rows if s in (r["shift"], "all")]
        lines.append(f"| {s} | " + " | ".join(_cell([r["correct"] for r in sel if r["kind"] == k]) for k in PLAINTEXTS)
                     + f" | {np.mean([r['well_formed'] for r in sel]):.2f} |")
    return "\n".join(lines)


def probability_quartiles(rows: list[dict]) -> list[tuple[float, float, list[dict]]]:
    """The rows cut into quartiles of bits per character under the pretrained model (low bits
    = high probability first): [(lo, hi, rows), ...]."""
    bpc = np.array([r["bits_per_char"] for r in rows])
    edges = np.quantile(bpc, [0, 0.25, 0.5, 0.75, 1.0])
    out = []
    for q in range(4):
        last = q == 3
        sel = [r for r, b in zip(rows, bpc) if edges[q] <= b and (b <= edges[q + 1] if last else b < edges[q + 1])]
        out.append((float(edges[q]), float(edges[q + 1]), sel))
    return out


def probability_markdown(rows: list[dict]) -> str:
    lines = ["| bits/char under the pretrained model | share high | accuracy [95% Wilson] |", "|---|---|---|"]
    for lo, hi, sel in probability_quartiles(rows):
        share = np.mean([r["kind"] == "high" for r in sel]) if sel else float("nan")
        lines.append(f"| {lo:.2f}-{hi:.2f} | {share:.2f} | {_cell([r['correct'] for r in sel])} |")
    return "\n".join(lines)


def probe_markdown(probe: list[dict], model: str) -> str:
    if not probe:
        return ""
    return (f"Probe: {model} on rot-13 (zero-shot, greedy): high-probability "
            f"{_cell([r['correct'] for r in probe if r['kind'] == 'high'])}, low-probability "
            f"{_cell([r['correct'] for r in probe if r['kind'] == 'low'])}; e.g. "
            + "; ".join(f"{r['plaintext']!r} -> {r['response'][:40]!r}" for r in probe[:3]))


def plot_accuracy(rows: list[dict], path: Path, title: str = "") -> None:
    """Accuracy by shift and plaintext kind (bars, Wilson errors), and accuracy against the
    plaintext's bits per character under the pretrained model (quartiles)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shifts = sorted({r["shift"] for r in rows})
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for j, kind in enumerate(PLAINTEXTS):
        acc, err = [], [[], []]
        for s in shifts:
            c = [r["correct"] for r in rows if r["shift"] == s and r["kind"] == kind]
            lo, hi = stats.wilson_interval(int(sum(c)), len(c))
            acc.append(np.mean(c))
            err[0].append(acc[-1] - lo)
            err[1].append(hi - acc[-1])
        a.bar(np.arange(len(shifts)) + 0.4 * j, acc, 0.4, yerr=err, capsize=3, label=f"{kind}-probability plaintext")
    a.set_xticks(np.arange(len(shifts)) + 0.2, [f"rot-{s}" for s in shifts])
    a.set_ylabel("accuracy")
    a.set_ylim(0, 1.05)
    a.legend(fontsize=8)
    mids, accs = [], []
    for lo, hi, sel in probability_quartiles(rows):
        if sel:
            mids.append((lo + hi) / 2)
            accs.append(np.mean([r["correct"] for r in sel]))
    b.plot(mids, accs, marker="o")
    b.set_xlabel("plaintext bits per character under the pretrained model (quartile midpoints)")
    b.set_ylabel("accuracy")
    b.set_ylim(-0.05, 1.05)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- claim

def paired_correct(per_seed: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """([S, P] high, [S, P] low) correctness, P = every (shift, pair) of a seed, the same
    order in both (raises when a pair misses a twin)."""
    high, low = [], []
    for s, r in enumerate(per_seed):
        by = {(x["shift"], x["pair"], x["kind"]): x["correct"] for x in r["rows"]}
        keys = sorted({(k[0], k[1]) for k in by})
        if any((*k, kind) not in by for k in keys for kind in PLAINTEXTS):
            raise ValueError(f"seed {s}: a test pair misses its high or low twin")
        high.append([by[(*k, "high")] for k in keys])
        low.append([by[(*k, "low")] for k in keys])
    return np.asarray(high, np.float64), np.asarray(low, np.float64)


def rot13_vs_other(per_seed: list[dict]) -> dict:
    """accuracy(rot-13) - accuracy(other shifts), nested two-sample bootstrap over seeds."""
    a = [[x["correct"] for x in r["rows"] if x["shift"] == 13] for r in per_seed]
    b = [[x["correct"] for x in r["rows"] if x["shift"] != 13] for r in per_seed]
    return stats.two_sample_nested_bootstrap(a, b)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    high, low = paired_correct(per_seed)
    b = stats.paired_bootstrap_interval(high, low)
    pooled = float(np.concatenate([high.reshape(-1), low.reshape(-1)]).mean())
    lo, hi = ACCURACY_RANGE
    r13 = rot13_vs_other(per_seed)
    return stats.decide(
        b["effect"], b["low"], b["high"], threshold=0.0,
        test=(f"accuracy(high) - accuracy(low), nested paired bootstrap over {b['seeds']} seeds x {b['problems']} "
              f"pairs; rot-13 minus other shifts {r13['effect']:+.3f} [{r13['low']:+.3f}, {r13['high']:+.3f}]"),
        preconditions=[("the model decodes, below its ceiling", lo <= pooled <= hi,
                        f"pooled accuracy {pooled:.3f} (needs {lo} to {hi})")])


def summarize(results: dict, workdir: Path) -> str:
    """Pooled tables over seeds and the plot."""
    per_seed = next(iter(results.values()))
    if not isinstance(per_seed, list):
        per_seed = [per_seed]
    rows = [x for r in per_seed for x in r["rows"]]
    probe = [x for r in per_seed for x in r["probe_rows"]]
    plot_accuracy(rows, Path(workdir) / "accuracy.png", title=f"pooled over {len(per_seed)} seed(s)")
    r13 = rot13_vs_other(per_seed)
    return "\n".join(["## Accuracy over all seeds (95% Wilson intervals)", "", accuracy_markdown(rows), "",
                      f"rot-13 minus the other shifts: {r13['effect']:+.3f} [{r13['low']:+.3f}, {r13['high']:+.3f}] "
                      "(nested two-sample bootstrap over seeds).", "",
                      "## Accuracy by the plaintext's probability under the pretrained model", "",
                      probability_markdown(rows), "", probe_markdown(probe, "the probe model"), "",
                      "![accuracy](accuracy.png)", ""])
