"""Character-level tasks under tokenization (Uzan and Pinter 2025, "CharBench: Evaluating the
Role of Tokenization in Character-Level Tasks").

CharBench asks models to count a character in a word and to locate it, and reports that on
the positional tasks accuracy correlates negatively with the length of the token that holds
the queried character (a character inside a long token is hidden from a model that sees
tokens), while counting correlates more with the word's length and the true count.

Tasks (:mod:`jaxlab.tasks.characters`): ``char_count`` ("How many times does the letter "r"
appear in the word "error"? Answer with the number only.") and ``char_locate`` (the 1-based
position of the first occurrence of a letter), on real words of the embedded corpus of
``word_lengths`` letters. Per seed, ``task.splits`` draws ``n_examples`` test problems per task
(and ``n_train`` train problems, disjoint from them, for the byte model).

Models.
  * The claim's model, ``model`` (paper: SmolLM2-135M-Instruct, a BPE tokenizer): each prompt
    zero-shot as one user message through its chat template, greedy, at most
    ``max_new_tokens``; the answer is the last integer of the last line (the instructed-task
    parser, so "The letter r appears 3 times." reads 3). Token length of a locate example: the
    length in characters of the token of ``model``'s tokenizer that holds the target character
    when the prompt is encoded (:func:`jaxlab.analysis.characters.token_length_at`).
  * The comparison: a byte model (``byte_model``: "quickstart" of configs/models.py, or "tiny")
    trained here from scratch by SFT on the train split of the same tasks (``byte_steps``
    steps), greedy on the same test prompts without a chat template. Every token is one
    character, so its token length is 1: its accuracy is reported beside the BPE model's, not
    correlated.

Claim (fixed before any run, version 1): on ``char_locate``, the claim model's correctness
correlates negatively with the length of the token that holds the target character. Effect:
the point-biserial correlation r (the Pearson correlation of token length with 0/1 correctness)
of the locate examples pooled over seeds; 95% interval: nested bootstrap over seeds x examples
(:func:`jaxlab.analysis.characters.nested_bootstrap_correlation`). Threshold 0, direction
"less": held when the interval lies below 0, not held when it lies at or above 0,
inconclusive otherwise. Preconditions (a floor must not pass for a verdict): (1) the model
locates characters at all: its locate accuracy (pooled) is above the constant-guess floor of
the locate answers by 2 standard errors (:func:`jaxlab.evals.floor.clear_of_floor`); (2) the
token lengths of the locate targets take at least two values.

A pilot of SmolLM2-135M-Instruct on 48 locate prompts of a separate stream (seed 1) before the
claim was fixed: with 2 chat shots it answers "1" to every question (accuracy 0.08, below the
0.25 floor); zero-shot it writes sentences. So the verdict may well be inconclusive by
precondition (1): a 135M model may not locate characters at all.

Presets.
  smoke: a tiny random byte model stands in for the claim model (its "tokenizer" is bytes, so
    token lengths are all 1 and precondition (2) fails: inconclusive) and a tiny byte model
    trained 10 steps; seconds.
  paper: SmolLM2-135M-Instruct, 64 problems per task (words of 4-8 letters) and a
    quickstart byte model trained 200 SFT steps (16 rows of 128 bytes, one problem a row) on
    2000 train problems per task, per seed. Sized for the shared CPUs: under a load average
    near 15 a 16 x 256 SFT step took about 4 s, and SmolLM2 answered 128 prompts in about 5
    minutes. Measured: 41 minutes for 2 seeds, with the machine's load average near 15 (other
    jobs shared the 2 cores); on a quiet machine it is several times faster.

    jaxlab run experiments/charbench_tokenization.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/charbench_tokenization.py --preset paper --seeds 2 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.analysis import characters as chars
from jaxlab.evals.floor import clear_of_floor, constant_guess_floor
from jaxlab.evals.generation import complete, encode_task_prompt, prompts_as_chat
from jaxlab.samplers import SampleConfig
from jaxlab.tasks.characters import CharCount, CharLocate, target_char_index

CLAIM = ("On locating a character in a word, the BPE model's correctness correlates negatively with "
         "the length of the token that holds the character.")
CLAIM_VERSION = 1
TASK_NAMES = ("char_count", "char_locate")
REPORT_KEYS = ["locate_r", "accuracy_model_char_locate", "accuracy_byte_char_locate",
               "accuracy_model_char_count", "accuracy_byte_char_count"]
PRESETS = {
    "smoke": {"model": "tiny-random", "n_examples": 8, "byte_model": "tiny", "byte_steps": 10, "n_train": 32,
              "seq_len": 128,
              "max_new_tokens": 6, "batch_size": 8},
    "paper": {"model": "smollm2-135m-instruct", "n_examples": 64, "byte_model": "quickstart", "byte_steps": 200,
              "n_train": 2000, "seq_len": 128, "max_new_tokens": 24, "batch_size": 16},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "charbench_tokenization"
    model: str = "smollm2-135m-instruct"   # the claim's model: a load_model spec or "tiny-random"
    n_examples: int = 64                   # test problems per task and seed
    word_lengths: tuple[int, int] = (4, 8)
    occurrences: str = "first"             # char_locate: "first" or "any"
    max_new_tokens: int = 24
    batch_size: int = 16
    byte_model: str = "quickstart"         # "quickstart" (configs/models.py) or "tiny"
    byte_steps: int = 600
    byte_lr: float = 3e-3
    n_train: int = 2000                    # SFT problems per task for the byte model
    seq_len: int = 256                     # packed SFT rows of the byte model
    seed: int = 0

    def __post_init__(self):
        if self.byte_model not in ("quickstart", "tiny"):
            raise ValueError(f"byte_model must be 'quickstart' or 'tiny', got {self.byte_model!r}")
        if self.n_examples < 2 or self.n_train < 1 or self.byte_steps < 1:
            raise ValueError(f"need n_examples >= 2, n_train >= 1 and byte_steps >= 1, got {self.n_examples}, "
                             f"{self.n_train}, {self.byte_steps}")


def get_config() -> Config:
    return Config()


def tasks(cfg: Config) -> dict:
    low, high = cfg.word_lengths
    rng = (int(low), int(high))
    return {"char_count": CharCount(train_difficulty=rng, ood_difficulty=rng),
            "char_locate": CharLocate(train_difficulty=rng, ood_difficulty=rng, occurrences=cfg.occurrences)}


def greedy_texts(model_cfg, params, tok, prompts: list[str], *, max_new_tokens: int, batch_size: int,
                 progress: bool = False) -> list[str]:
    """The greedy completion of each task prompt (through the chat template when the tokenizer
    has an instruct template, else the plain text after BOS)."""
    chat = prompts_as_chat(tok)
    ids = [encode_task_prompt(tok, p, chat=chat) for p in prompts]
    texts, _ = complete(model_cfg, params, tok, ids, key=jax.random.key(0), batch_size=batch_size,
                        progress=progress, sample_cfg=SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                                                                   stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id))
    return texts


def _byte_model(cfg: Config, train: list, workdir: Path, progress: bool):
    """A byte model trained from scratch by SFT on ``train`` (Examples); resumable in workdir."""
    from configs import models
    from jaxlab.data.tokenizer import BYTES
    from jaxlab.train.fit import LoopConfig
    from jaxlab.train.optim import OptimConfig
    from jaxlab.train.sft import SFTConfig, train_sft
    from jaxlab.train.sharding import MeshConfig, experiment_mesh

    if cfg.byte_model == "tiny":
        from jaxlab.interop.models import TINY_CONFIG as mcfg
    else:
        mcfg = models.get("quickstart")
    records = [{"prompt": e.prompt, "response": e.answer} for e in train]
    sft = SFTConfig(batch_size=16, seq_len=cfg.seq_len, loop=LoopConfig(
        steps=cfg.byte_steps, seed=cfg.seed, log_every=max(cfg.byte_steps // 10, 1), eval_every=cfg.byte_steps,
        checkpoint_every=cfg.byte_steps))
    optim = OptimConfig(lr=cfg.byte_lr, warmup_steps=max(1, min(50, cfg.byte_steps // 10)), schedule="cosine",
                        weight_decay=0.1)
    result = train_sft(workdir, records, model_cfg=mcfg, sft=sft, optim=optim, mesh=experiment_mesh(MeshConfig(data=1)),
                       progress=progress, tokenizer=BYTES)
    losses = [r["train/loss"] for r in result.records if "train/loss" in r]
    return mcfg, jax.device_get(result.params), BYTES, losses


def _rows(label: str, examples: list, texts: list[str], task_of: dict, token_len) -> list[dict]:
    rows = []
    for e, text in zip(examples, texts, strict=True):
        task = task_of[e.meta["task"]]
        row = {"model": label, "task": e.meta["task"], "word": e.meta["word"], "letter": e.meta["letter"],
               "answer": e.answer, "correct": int(task.verify(e, text)), "well_formed": int(task.format_reward(text)),
               "response": text[:120]}
        if e.meta["task"] == "char_locate":
            row["position"] = e.meta["position"]
            row["token_len"] = int(token_len(e))
        rows.append(row)
    return rows


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    from jaxlab.interop.models import load_experiment_model

    task_of = tasks(cfg)
    test, train = [], []
    for name in TASK_NAMES:
        s = task_of[name].splits(cfg.seed, cfg.n_train, cfg.n_examples, 0)
        test += s["test"]
        train += s["train"]
    prompts = [e.prompt for e in test]

    model_cfg, params, tok = load_experiment_model(cfg.model, cfg.seed)
    texts = greedy_texts(model_cfg, params, tok, prompts, max_new_tokens=cfg.max_new_tokens,
                         batch_size=cfg.batch_size, progress=progress)
    rows = _rows("model", test, texts, task_of,
                 lambda e: chars.token_length_at(tok, e.prompt, target_char_index(e.meta)))
    del params

    byte_cfg, byte_params, byte_tok, losses = _byte_model(cfg, train, workdir / "byte_model", progress)
    byte_texts = greedy_texts(byte_cfg, byte_params, byte_tok, prompts, max_new_tokens=min(cfg.max_new_tokens, 8),
                              batch_size=cfg.batch_size, progress=progress)
    rows += _rows("byte", test, byte_texts, task_of, lambda e: 1)

    out = {"rows": rows, "byte_first_loss": losses[0], "byte_last_loss": losses[-1]}
    for label in ("model", "byte"):
        for name in TASK_NAMES:
            sel = [r["correct"] for r in rows if r["model"] == label and r["task"] == name]
            out[f"accuracy_{label}_{name}"] = float(np.mean(sel))
    locate = [r for r in rows if r["model"] == "model" and r["task"] == "char_locate"]
    try:
        out["locate_r"] = chars.point_biserial([r["token_len"] for r in locate], [r["correct"] for r in locate])
    except ValueError:
        out["locate_r"] = None   # undefined: constant correctness or token length
    plot_by_token_length(rows, workdir / "token_length.png", title=f"{cfg.model}, seed {cfg.seed}")
    out["report"] = "\n".join([
        f"{cfg.model} (zero-shot, greedy) and a {cfg.byte_model} byte model trained {cfg.byte_steps} SFT steps "
        f"on {len(train)} problems (loss {losses[0]:.3f} -> {losses[-1]:.3f}); {cfg.n_examples} test problems per "
        f"task, words of {cfg.word_lengths[0]}-{cfg.word_lengths[1]} letters.", "",
        accuracy_markdown(rows), "", token_length_markdown(rows), "", "![accuracy by token length](token_length.png)"])
    return out


# ---------------------------------------------------------------- tables and plots

def _cell(values) -> str:
    k, n = int(np.sum(values)), len(values)
    if n == 0:
        return "-"
    lo, hi = stats.wilson_interval(k, n)
    return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}] (n={n})"


def accuracy_markdown(rows: list[dict]) -> str:
    """Model x task accuracy with 95% Wilson intervals, and the well-formed rate."""
    lines = ["| model | " + " | ".join(TASK_NAMES) + " | well formed |", "|---|---|---|---|"]
    for label in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == label]
        lines.append(f"| {label} | " + " | ".join(_cell([r["correct"] for r in sel if r["task"] == t])
                                                  for t in TASK_NAMES)
                     + f" | {np.mean([r['well_formed'] for r in sel]):.2f} |")
    return "\n".join(lines)


def token_length_markdown(rows: list[dict]) -> str:
    """char_locate accuracy of the claim model by the length of the token holding the target."""
    locate = [r for r in rows if r["model"] == "model" and r["task"] == "char_locate"]
    lines = ["| token length (chars) | char_locate accuracy [95% Wilson] |", "|---|---|"]
    for n in sorted({r["token_len"] for r in locate}):
        lines.append(f"| {n} | {_cell([r['correct'] for r in locate if r['token_len'] == n])} |")
    return "\n".join(lines)


def plot_by_token_length(rows: list[dict], path: Path, title: str = "") -> None:
    """char_locate accuracy against token length (claim model, Wilson bars; the byte model at
    length 1), and the accuracy of each model on each task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for label, marker in (("model", "o"), ("byte", "s")):
        locate = [r for r in rows if r["model"] == label and r["task"] == "char_locate"]
        lengths = sorted({r["token_len"] for r in locate})
        acc, err = [], [[], []]
        for n in lengths:
            c = [r["correct"] for r in locate if r["token_len"] == n]
            lo, hi = stats.wilson_interval(int(sum(c)), len(c))
            acc.append(np.mean(c))
            err[0].append(acc[-1] - lo)
            err[1].append(hi - acc[-1])
        a.errorbar(lengths, acc, yerr=err, marker=marker, capsize=3, label=f"{label} model")
    a.set_xlabel("length of the token holding the target character (chars)")
    a.set_ylabel("char_locate accuracy")
    a.set_ylim(-0.05, 1.05)
    a.legend(fontsize=8)
    labels = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        b.bar(np.arange(len(TASK_NAMES)) + j * width,
              [np.mean([r["correct"] for r in rows if r["model"] == label and r["task"] == t] or [0])
               for t in TASK_NAMES], width, label=label)
    b.set_xticks(np.arange(len(TASK_NAMES)) + 0.4 - width / 2, TASK_NAMES)
    b.set_ylabel("accuracy")
    b.set_ylim(0, 1)
    b.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- claim

def locate_rows(per_seed: list[dict], label: str = "model") -> list[list[dict]]:
    """Each seed's char_locate rows of one model."""
    return [[x for x in r["rows"] if x["model"] == label and x["task"] == "char_locate"] for r in per_seed]


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    by_seed = locate_rows(per_seed)
    correct = [x["correct"] for s in by_seed for x in s]
    lengths = sorted({x["token_len"] for s in by_seed for x in s})
    clear, detail = clear_of_floor(correct, constant_guess_floor([x["answer"] for s in by_seed for x in s]))
    pre = [("the model locates characters (above the constant-guess floor by 2 SE)", clear, detail),
           ("token lengths vary", len(lengths) >= 2, f"token lengths seen: {lengths}")]
    test = "point-biserial r of token length and correctness on char_locate, nested bootstrap over seeds x examples"
    try:
        r = chars.nested_bootstrap_correlation([[x["token_len"] for x in s] for s in by_seed],
                                               [[x["correct"] for x in s] for s in by_seed])
    except ValueError as err:   # r undefined (constant correctness or length): no effect to report
        return stats.decide(0.0, 0.0, 0.0, threshold=0.0, direction="less", test=f"{test}: {err}",
                            preconditions=pre + [("the correlation is defined", False, str(err))])
    return stats.decide(r["effect"], r["low"], r["high"], threshold=0.0, direction="less",
                        test=f"{test} ({r['seeds']} seeds, {r['examples']} examples)", preconditions=pre)


def summarize(results: dict, workdir: Path) -> str:
    """Pooled accuracy tables over seeds and the token-length plot."""
    per_seed = next(iter(results.values()))
    if not isinstance(per_seed, list):
        per_seed = [per_seed]
    rows = [x for r in per_seed for x in r["rows"]]
    plot_by_token_length(rows, Path(workdir) / "token_length.png", title=f"pooled over {len(per_seed)} seed(s)")
    return "\n".join(["## Accuracy over all seeds (95% Wilson intervals)", "", accuracy_markdown(rows), "",
                      "## char_locate accuracy by token length (claim model)", "", token_length_markdown(rows), "",
                      "![accuracy by token length](token_length.png)", ""])
