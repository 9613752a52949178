"""A small encoder fine-tuned for token classification against a small decoder's few-shot
extraction, on the same held-out documents, scored alike.

Documents: ``doc_extract`` examples (``jaxlab.tasks.documents``: invoices, receipts, purchase
orders and forms at difficulty ``difficulty``, the ``layouts`` listed; an example whose
document is longer than the encoder's ``seq_len`` bytes is drawn again and the share
reported). Per seed, ``n_train`` training examples and ``n_test`` held-out ones.

  encoder  ``jaxlab.models.encoder`` (bytes, alternating local/global attention, a few
           million parameters at most) trained from a random init as a BIO tagger of every
           schema field (``jaxlab.train.tagging``) on the training documents for ``steps``
           steps; a held-out document's predicted tags decode to a record of its asked
           fields (``bio_record``).
  decoder  ``model`` (SmolLM2-135M-Instruct at the paper preset) prompted with ``shots`` = 3
           in-context examples as chat turns: the ``doc_extract`` prompt of a training
           document of the same kind as the user turn and its gold one-line JSON record as the
           assistant turn, then the held-out document's prompt; greedy decoding of at most
           ``max_new_tokens`` tokens (``jaxlab.evals.generation.complete``); the answer line
           parsed by the task (``parse_record``: bounded, never evaluated).

Both records are scored by the same ``field_scores`` against the gold record (field F1 per
document; a malformed answer scores 0). Seeds change the documents, the shots, the encoder's
initialisation and data order.

Claim (version 1, fixed before any run; the issue's). The fine-tuned encoder's field F1 is
higher than the few-shot decoder's. Effect = mean over seeds and held-out documents of
F1_encoder - F1_decoder (paired per document), 95% interval by the nested paired bootstrap
over seeds and documents (``stats.paired_bootstrap_interval``); threshold 0: held when the
interval lies above 0, not held when it lies at or below 0, inconclusive otherwise.
Precondition: the decoder answers in the format, i.e. at least 50% of its answers are a
well-formed JSON object (``task.format_reward``), so that what is compared is extraction and
not only the decoder's failure to write JSON. The decoder's F1 over its well-formed answers
alone is reported beside it.

Presets.
  smoke: a tiny random byte decoder (``tiny-random``, as in genrm_verifier) and a tiny
    encoder, a handful of documents and steps: seconds of work to exercise every step (the
    tests run it); its decoder writes no JSON, so its verdict is inconclusive by the
    precondition.
  paper: SmolLM2-135M-Instruct on the CPU, 32 held-out documents per seed, 2 seeds,
    documents at difficulty 2-4 without HTML (short enough that four documents fit a prompt
    of well under 1,000 tokens; the gold records are at most about 200 bytes, so 128 new
    tokens hold them), an encoder of d_model 64 and 3 layers (about 0.2 M parameters)
    trained 200 steps of 8 documents. Sized to the shared 2 CPU cores: SmolLM2 prefill of
    ~6,000 tokens and 128 decode steps per batch of 8 take minutes there.

    jaxlab run experiments/encoder_vs_fewshot.py --preset smoke --seeds 2 --publish   # a minute or two
    jaxlab run experiments/encoder_vs_fewshot.py --preset paper --seeds 2 --publish   # ~40 min per seed, 2 shared CPU cores
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import BYTES
from jaxlab.evals.generation import check_vocab, complete
from jaxlab.models import encoder, transformer
from jaxlab.samplers import SampleConfig
from jaxlab.tasks.documents import DocumentExtraction, field_scores
from jaxlab.tasks.documents.generator import FIELDS, LAYOUTS
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.tagging import TaggingConfig, extract_records, train_tagger

CLAIM = ("A small encoder fine-tuned for BIO token classification extracts document fields with a higher "
         "field F1 than SmolLM2-135M-Instruct prompted with 3 in-context examples.")
CLAIM_VERSION = 1
REPORT_KEYS = ["f1_encoder", "f1_decoder", "f1_difference", "decoder_well_formed", "f1_decoder_well_formed",
               "encoder_params"]
WELL_FORMED_FLOOR = 0.5
ANSWER_SUFFIX = "\nJSON: "  # how a doc_extract prompt ends after the document
PRESETS = {
    "smoke": {"model": "tiny-random", "difficulty": (1, 2), "layouts": ("kv", "csv"), "seq_len": 256,
              "d_model": 32, "n_heads": 2, "head_dim": 16, "mlp_dim": 64, "local_window": 16, "n_train": 12,
              "n_test": 4, "steps": 4, "batch_size": 4, "max_new_tokens": 16, "gen_batch": 4},
    "paper": {"model": "smollm2-135m-instruct", "difficulty": (2, 4), "n_train": 1200, "n_test": 32,
              "steps": 200, "batch_size": 8, "max_new_tokens": 128, "gen_batch": 8},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "encoder_vs_fewshot"
    model: str = "smollm2-135m-instruct"  # or "tiny-random" (a 1-layer byte model, random init)
    difficulty: tuple[int, int] = (2, 4)
    layouts: tuple[str, ...] = tuple(lay for lay in LAYOUTS if lay != "html")
    seq_len: int = 512               # encoder row (bytes); longer documents are drawn again
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 2
    head_dim: int = 32
    mlp_dim: int = 128
    local_window: int = 64
    n_train: int = 1200
    n_test: int = 32
    steps: int = 200
    batch_size: int = 8
    optim: OptimConfig = OptimConfig(lr=2e-3, warmup_steps=20, schedule="cosine", weight_decay=0.01)
    shots: int = 3
    max_new_tokens: int = 128
    gen_batch: int = 8
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)

    def __post_init__(self):
        if not set(self.layouts) <= set(LAYOUTS) or not self.layouts:
            raise ValueError(f"layouts must be a non-empty subset of {LAYOUTS}, got {self.layouts}")
        if self.shots < 0:
            raise ValueError(f"shots must be >= 0, got {self.shots}")

    @property
    def encoder(self) -> encoder.EncoderConfig:
        return encoder.EncoderConfig(vocab_size=259, d_model=self.d_model, n_layers=self.n_layers,
                                     n_heads=self.n_heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim,
                                     local_window=self.local_window)


def get_config() -> Config:
    return Config()


TINY = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
                          mlp_dim=64)


def _decoder(cfg: Config):
    """(model config, params, tokenizer) of ``cfg.model``."""
    if cfg.model == "tiny-random":
        return TINY, transformer.init(TINY, jax.random.key(cfg.seed)), BYTES
    from jaxlab.interop.models import load_model
    return load_model(cfg.model)


def document_of(example) -> dict:
    """The document of a ``doc_extract`` example as the tagger reads it: ``text`` (the prompt
    between ``meta["doc_start"]`` and the answer cue), ``spans``, ``record``, ``types``."""
    meta, prompt = example.meta, example.prompt
    if not prompt.endswith(ANSWER_SUFFIX):
        raise ValueError(f"a doc_extract prompt ends with {ANSWER_SUFFIX!r}; this one ends {prompt[-12:]!r}")
    return {"text": prompt[meta["doc_start"]:len(prompt) - len(ANSWER_SUFFIX)],
            "spans": {k: tuple(v) for k, v in meta["spans"].items()}, "record": meta["record"],
            "types": meta["types"], "kind": meta["kind"]}


def draw_examples(task: DocumentExtraction, rng: np.random.Generator, n: int, difficulty: tuple[int, int],
                  max_bytes: int) -> tuple[list, int]:
    """``n`` examples at difficulties drawn from ``difficulty`` whose document fits ``max_bytes``
    (others drawn again, at most 10 n draws); (examples, how many were drawn again)."""
    out, redrawn = [], 0
    while len(out) < n:
        if len(out) + redrawn >= 10 * max(n, 1):
            raise ValueError(f"{redrawn} documents were over max_bytes={max_bytes}; raise seq_len")
        ex = task.generate(rng, int(rng.integers(difficulty[0], difficulty[1] + 1)))
        if len(document_of(ex)["text"].encode("utf-8")) > max_bytes:
            redrawn += 1
            continue
        out.append(ex)
    return out, redrawn


def fewshot_messages(example, shots: list) -> list[dict]:
    """Chat turns: for each shot its prompt (user) and gold JSON record (assistant), then the
    example's prompt (user)."""
    messages = []
    for s in shots:
        messages += [{"role": "user", "content": s.prompt}, {"role": "assistant", "content": s.answer}]
    return messages + [{"role": "user", "content": example.prompt}]


def pick_shots(rng: np.random.Generator, train: list, example, k: int) -> list:
    """``k`` distinct training examples of the example's document kind (any kind when fewer)."""
    same = [e for e in train if e.meta["kind"] == example.meta["kind"]]
    pool = same if len(same) >= k else train
    return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    workdir = Path(workdir)
    task = DocumentExtraction(layouts=cfg.layouts)
    train, redrawn_train = draw_examples(task, np.random.default_rng([cfg.seed, 0]), cfg.n_train, cfg.difficulty,
                                         cfg.seq_len)
    test, redrawn_test = draw_examples(task, np.random.default_rng([cfg.seed, 1]), cfg.n_test, cfg.difficulty,
                                       cfg.seq_len)
    train_docs, test_docs = [document_of(e) for e in train], [document_of(e) for e in test]

    # encoder: BIO tagger trained on the training documents
    enc = cfg.encoder
    tag_cfg = TaggingConfig(fields=tuple(FIELDS), batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                            loop=LoopConfig(steps=cfg.steps, seed=cfg.seed, log_every=max(1, cfg.steps // 40),
                                            eval_every=cfg.steps, checkpoint_every=cfg.steps))
    tagger = train_tagger(workdir / "encoder", train_docs, encoder_cfg=enc, cfg=tag_cfg, optim=cfg.optim,
                          mesh=experiment_mesh(cfg.mesh), progress=progress)
    enc_records = extract_records(tagger.state.params, test_docs, enc, tag_cfg, fields_of=lambda d: list(d["record"]),
                                  progress=progress)
    f1_enc = [field_scores(d["record"], d["types"], r)["f1"] for d, r in zip(test_docs, enc_records)]

    # decoder: greedy few-shot answers, cached so that a finished seed is not generated again
    answers_path = workdir / "decoder_answers.json"
    if answers_path.exists():
        answers = json.loads(answers_path.read_text())
    else:
        model_cfg, params, tok = _decoder(cfg)
        check_vocab(model_cfg, tok)
        shot_rng = np.random.default_rng([cfg.seed, 2])
        prompts = [encode_prompt(fewshot_messages(e, pick_shots(shot_rng, train, e, cfg.shots)), tok) for e in test]
        texts, truncated = complete(model_cfg, params, tok, prompts, key=jax.random.key(cfg.seed),
                                    batch_size=cfg.gen_batch, progress=progress, desc="few-shot",
                                    sample_cfg=SampleConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                                                            stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id))
        answers = {"texts": texts, "truncated": truncated.tolist(),
                   "prompt_tokens": [int(len(p)) for p in prompts]}
        answers_path.write_text(json.dumps(answers))
    texts = answers["texts"]
    f1_dec = [task.scores(e, t)["f1"] for e, t in zip(test, texts)]
    well_formed = [task.format_reward(t) for t in texts]

    f1_dec_wf = [f for f, w in zip(f1_dec, well_formed) if w]
    out = {
        "f1_encoder": float(np.mean(f1_enc)), "f1_decoder": float(np.mean(f1_dec)),
        "f1_difference": float(np.mean(f1_enc) - np.mean(f1_dec)),
        "decoder_well_formed": float(np.mean(well_formed)),
        "f1_decoder_well_formed": float(np.mean(f1_dec_wf)) if f1_dec_wf else None,
        "decoder_truncated": float(np.mean(answers["truncated"])),
        "mean_prompt_tokens": float(np.mean(answers["prompt_tokens"])),
        "encoder_params": int(encoder.count_params(tagger.state.params)),
        "redrawn_fraction": (redrawn_train + redrawn_test) / (redrawn_train + redrawn_test + cfg.n_train + cfg.n_test),
        "per_doc_f1": {"encoder": f1_enc, "decoder": f1_dec},
        "well_formed": well_formed,
        "encoder_losses": [m["train/loss"] for m in tagger.records if "train/loss" in m],
        "examples": [{"document": d["text"], "gold": d["record"], "encoder": r, "decoder": t}
                     for d, r, t in list(zip(test_docs, enc_records, texts))[:4]],
    }
    _plot(out, workdir / "encoder_vs_fewshot.png")
    out["report"] = _seed_report(out, cfg)
    return out


def _seed_report(r: dict, cfg: Config) -> str:
    lines = [f"{len(r['per_doc_f1']['encoder'])} held-out documents (difficulty {tuple(cfg.difficulty)}); decoder "
             f"{cfg.model} with {cfg.shots} shots, mean prompt {r['mean_prompt_tokens']:.0f} tokens; encoder "
             f"{r['encoder_params']:,} parameters, {cfg.steps} steps of {cfg.batch_size} documents.", "",
             "| extractor | field F1 | well-formed answers |", "|---|---|---|",
             f"| encoder (BIO tagger) | {r['f1_encoder']:.3f} | 1.000 (by construction) |",
             f"| decoder (few-shot) | {r['f1_decoder']:.3f} | {r['decoder_well_formed']:.3f} |"]
    if r["f1_decoder_well_formed"] is not None:
        lines.append(f"| decoder, well-formed answers only | {r['f1_decoder_well_formed']:.3f} | 1 |")
    lines += ["", "![per-document F1](encoder_vs_fewshot.png)"]
    return "\n".join(lines)


def _plot(r: dict, path: Path) -> None:
    """Per-document F1 of the encoder against the decoder, and the encoder's training loss."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    enc, dec = np.asarray(r["per_doc_f1"]["encoder"]), np.asarray(r["per_doc_f1"]["decoder"])
    wf = np.asarray(r["well_formed"]) > 0
    a.scatter(dec[wf], enc[wf], s=12, alpha=0.6, label="decoder JSON well-formed")
    a.scatter(dec[~wf], enc[~wf], s=12, alpha=0.6, marker="x", label="malformed (F1 0)")
    a.plot([0, 1], [0, 1], color="#b03a2e", linestyle="--", linewidth=1)
    a.set_xlabel("F1, few-shot decoder")
    a.set_ylabel("F1, encoder tagger")
    a.legend(fontsize=7)
    ys = r["encoder_losses"]
    b.plot(np.arange(1, len(ys) + 1), ys)
    b.set_yscale("log")
    b.set_xlabel("logged step")
    b.set_ylabel("encoder training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The three-way verdict (module docstring) from every seed's per-document F1."""
    per_seed = next(iter(runs.values()))
    enc_SP = np.asarray([r["per_doc_f1"]["encoder"] for r in per_seed], np.float64)
    dec_SP = np.asarray([r["per_doc_f1"]["decoder"] for r in per_seed], np.float64)
    r = stats.paired_bootstrap_interval(enc_SP, dec_SP)
    wf = float(np.mean([w for r_ in per_seed for w in r_["well_formed"]]))
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=(f"F1 encoder - F1 few-shot decoder, nested paired bootstrap over {r['seeds']} seeds x "
              f"{r['problems']} held-out documents"),
        preconditions=[("the decoder answers in the format", wf >= WELL_FORMED_FLOOR,
                        f"{wf:.1%} of the decoder's answers are well-formed JSON objects "
                        f"(needs >= {WELL_FORMED_FLOOR:.0%})")])
