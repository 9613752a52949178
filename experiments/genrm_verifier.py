"""Generative verifier (GenRM) vs a classifier-head verifier for best-of-N selection (Zhang et
al. 2024, "Generative Verifiers: Reward Modeling as Next-Token Prediction").

Task: ``jaxlab.tasks`` arithmetic (``ops``, ``digits``-digit operands), hard enough that a
briefly trained generator is often wrong.

Protocol.
  1. Generator: a byte-level model trained with cross-entropy on prompt -> answer for
     ``gen_steps`` steps (deliberately short: it should be right only part of the time).
  2. Candidates: for each of ``n_verify_problems`` training problems the generator samples
     ``n_train_samples`` solutions at ``temperature``; for each of ``n_test`` held-out test
     problems, ``n_best_of`` solutions. Every solution is labelled by the task's verifier.
  3. GenRM, initialised from the generator: next-token prediction on the verification examples
     (``jaxlab.data.chat.verification_record``: problem + solution + "\\n" + "Is the answer
     correct? " -> "Yes" / "No") plus ``lam`` times the SFT loss on the correct solutions,
     L = L_SFT(D_verify) + lam * L_SFT(D_correct), each a token mean over its own tokens
     (exact per step: the correct-solution rows carry the weight lam * N_verify / N_correct
     of the step, and the step divides by N_verify). Score: p("Yes") = softmax(logits)[Y] at the
     position that predicts the verdict (``jaxlab.losses.verifier.p_yes``, over the vocabulary)
     when the first tokens of "Yes" and "No" differ (bytes: "Y" / "N"), else the whole-word
     probability exp(log p("Yes")) of a teacher-forced row (``genrm_scores``).
  4. Classifier, initialised from the generator, on the same verification prompts and labels: a
     linear head w.h + b on the final hidden state (after the final norm) at the same position,
     trained with binary cross-entropy, with the same steps, batch size and optimiser.
  5. Best-of-N on the test problems: the candidate with the highest GenRM p("Yes"), the one with
     the highest classifier score, and the first sample (no verifier). Accuracy = the fraction
     of problems whose selected candidate is correct. "Any correct" (the oracle) bounds them.

Criterion (fixed before running): the claim holds when GenRM's best-of-N accuracy is higher
than both the classifier's and the first sample's.

    jaxlab run experiments/genrm_verifier.py --workdir runs/genrm
    jaxlab run experiments/genrm_verifier.py --set model.d_model=256 --set model.n_layers=6 \\
        --set model.head_dim=64 --set model.mlp_dim=768 --set digits=2,4 --set gen_steps=1500 \\
        --set n_verify_problems=4000 --set verifier_steps=3000 --set n_test=500     # GPU
"""

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import tasks
from jaxlab.analysis.displacement import unembedding_inputs
from jaxlab.data.chat import (
    encode_prompt,
    encode_record,
    pad_rows,
    sft_dataset,
    verdict_ids,
    verification_record,
)
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.losses.lm import cross_entropy_sums, sequence_logprobs
from jaxlab.losses.verifier import (
    first_target_index,
    first_token_decides,
    logits_at,
    p_yes,
    p_yes_from_logprobs,
    verdict_word_mask,
)
from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig, generate, pad_prompts
from jaxlab.train.batch import apply_batch
from jaxlab.train.fit import LoopConfig, fit
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.sft import SFTConfig, train_sft

CLAIM = ("Best-of-N selection by GenRM p(\"Yes\") picks a correct answer more often than "
         "selection by a classifier-head verifier trained on the same data, and than a single sample.")
REPORT_KEYS = ["generator_sample_accuracy", "verify_train_positive_fraction", "first_sample_accuracy",
               "genrm_best_of_n_accuracy", "classifier_best_of_n_accuracy", "oracle_accuracy"]


DEFAULT_MODEL = transformer.Config(
    vocab_size=264, d_model=96, n_layers=2, n_heads=2, n_kv_heads=2, head_dim=48, mlp_dim=256,
    scan_unroll=2)
DEFAULT_GEN_OPTIM = OptimConfig(lr=3e-3, warmup_steps=30, weight_decay=0.0)
DEFAULT_VERIFIER_OPTIM = OptimConfig(lr=1e-3, warmup_steps=20, weight_decay=0.0)


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "genrm_verifier"
    model: transformer.Config = DEFAULT_MODEL
    ops: str = "+"
    digits: tuple[int, ...] = (1, 2)
    n_gen_train: int = 3000
    gen_steps: int = 300
    gen_optim: OptimConfig = DEFAULT_GEN_OPTIM
    temperature: float = 0.7
    n_verify_problems: int = 300
    n_train_samples: int = 4
    n_test: int = 100
    n_best_of: int = 8
    lam: float = 0.5
    verifier_steps: int = 300
    batch_size: int = 32
    seq_len: int = 64
    verifier_optim: OptimConfig = DEFAULT_VERIFIER_OPTIM
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)  # --set mesh.data=8 or mesh.fsdp=8: 8 devices


def get_config() -> Config:
    return Config()



# ---------------------------------------------------------------- candidates

def sample_solutions(params, model_cfg, prompts: list[str], n: int, *, temperature: float,
                     max_new_tokens: int, key, tokenizer: Tokenizer = BYTES) -> list[list[str]]:
    """``n`` sampled completions (text before the first stop id) of each prompt."""
    tok = tokenizer
    rows = [encode_prompt(p, tok) for p in prompts for _ in range(n)]
    tokens, mask = pad_prompts(rows, pad_id=tok.pad_id)
    out = generate(params, model_cfg, tokens, mask, key,
                   SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id))
    toks = np.asarray(out.tokens)
    texts = [tok.decode(toks[i], stop_at_eos=True).replace("\n", " ") for i in range(len(rows))]
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def verification_rows(problems: list[str], solutions: list[str], seq_len: int,
                      tokenizer: Tokenizer = BYTES, verdict: bool = True) -> dict:
    """Right-padded rows of the verification prompts with the "Yes" target (``verdict``;
    "No" otherwise), whose first target position is where the verdict is read."""
    return pad_rows([encode_record(verification_record(p, s, verdict), tokenizer)
                     for p, s in zip(problems, solutions)], seq_len, tokenizer)


# ---------------------------------------------------------------- GenRM

class GenRMSource:
    """Each step: ``batch_size`` packed rows of verification examples and ``batch_size`` of
    correct solutions. ``correct_scale`` [B] = lam * N_v / N_c on the correct rows (N_v, N_c:
    the step's target counts), so that summing verify_nll + scale * correct_nll and dividing by
    N_v gives L_SFT(D_verify) + lam * L_SFT(D_correct) exactly."""

    def __init__(self, verify_records, correct_records, *, lam, batch_size, seq_len, seed,
                 tokenizer: Tokenizer = BYTES):
        make = functools.partial(sft_dataset, seq_len=seq_len, batch_size=batch_size, seed=seed,
                                 tokenizer=tokenizer)
        self.verify = iter(make(verify_records))
        self.correct = iter(make(correct_records)) if correct_records and lam > 0 else None
        self.lam = lam

    def next(self, params, step):
        del params, step
        v = next(self.verify)
        if self.correct is None:
            return {**v, "correct_scale": np.zeros(len(v["inputs"]), np.float32)}, {}
        c = next(self.correct)
        scale = self.lam * v["mask"].sum() / max(c["mask"].sum(), 1.0)
        batch = {k: np.concatenate([v[k], c[k]]) for k in v}
        batch["correct_scale"] = np.concatenate([np.zeros(len(v["inputs"])),
                                                 np.full(len(c["inputs"]), scale)]).astype(np.float32)
        return batch, {}

    def get_state(self):
        return {"verify": self.verify.get_state(),
                "correct": None if self.correct is None else self.correct.get_state()}

    def set_state(self, state):
        self.verify.set_state(state["verify"])
        if self.correct is not None:
            self.correct.set_state(state["correct"])


def genrm_loss_sums(params, batch, key, *, model_cfg):
    """verify_nll + sum_rows correct_scale * correct_nll, with count N_v (class docstring)."""
    del key
    logits = apply_batch(params, batch, model_cfg)
    is_correct = (batch["correct_scale"] > 0)[:, None]
    v = cross_entropy_sums(logits, batch["targets"], jnp.where(is_correct, 0.0, batch["mask"]))
    c = cross_entropy_sums(logits, batch["targets"], batch["mask"] * batch["correct_scale"][:, None])
    return {"loss": v["nll"] + c["nll"], "verify_nll": v["nll"], "verify_correct": v["correct"],
            "count": v["count"]}


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def genrm_scores(params, rows, model_cfg, yes_ids: tuple, no_ids: tuple):
    """p("Yes") of each verification row, [B]. ``rows``: :func:`scoring_rows`. When the first
    tokens decide: softmax(logits)[Y] at the verdict position; otherwise the whole-word
    probability exp(log p("Yes" tokens)) of the teacher-forced "Yes" row (the "No" rows,
    ``no_*``, give log p("No") for the two-way variant of p_yes_from_logprobs)."""
    logits = apply_batch(params, rows, model_cfg)
    if first_token_decides(yes_ids, no_ids):
        return p_yes(logits_at(logits, first_target_index(rows["mask"])), yes_ids[0], no_ids[0])
    logp_yes, _ = sequence_logprobs(logits, rows["targets"], verdict_word_mask(rows["mask"], len(yes_ids)))
    logp_no, _ = sequence_logprobs(apply_batch(params, rows, model_cfg, prefix="no_"), rows["no_targets"],
                                   verdict_word_mask(rows["no_mask"], len(no_ids)))
    return p_yes_from_logprobs(logp_yes, logp_no)


def scoring_rows(problems: list[str], solutions: list[str], seq_len: int, tokenizer: Tokenizer = BYTES) -> dict:
    """The rows :func:`genrm_scores` reads: "Yes" rows, plus "No" rows (``no_*``) when the
    verdicts' first tokens do not decide."""
    rows = verification_rows(problems, solutions, seq_len, tokenizer)
    if not first_token_decides(*verdict_ids(tokenizer)):
        no = verification_rows(problems, solutions, seq_len, tokenizer, verdict=False)
        rows.update({f"no_{k}": v for k, v in no.items()})
    return rows


# ---------------------------------------------------------------- classifier head

def classifier_init(trunk: dict, d_model: int) -> dict:
    return {"model": trunk, "head": {"kernel": jnp.zeros((d_model,), jnp.float32),
                                     "bias": jnp.zeros((), jnp.float32)}}


def classifier_axes(path: str) -> tuple:
    if path.startswith("model/"):
        return transformer.param_axes(path[len("model/"):])
    return {"head/kernel": ("embed",), "head/bias": ()}[path]


def classifier_logits(params, rows, model_cfg):
    """The head's logit w.h + b at the verdict position of each row, [B]."""
    hidden = unembedding_inputs(params["model"], model_cfg, rows["inputs"],
                                positions_BT=rows["positions"], segment_ids_BT=rows["segment_ids"])
    h = logits_at(hidden, first_target_index(rows["mask"])).astype(jnp.float32)
    return h @ params["head"]["kernel"] + params["head"]["bias"]


def classifier_loss_sums(params, batch, key, *, model_cfg):
    """Binary cross-entropy sums, -[y log sigma(z) + (1 - y) log sigma(-z)], count = rows."""
    del key
    z = classifier_logits(params, batch, model_cfg)
    y = batch["label"]
    bce = -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))
    return {"loss": jnp.sum(bce), "accuracy": jnp.sum(((z > 0) == (y > 0.5)).astype(jnp.float32)),
            "count": jnp.asarray(y.shape[0], jnp.float32)}


class RowSource:
    """Shuffled epochs of fixed rows (a dict of [N, ...] arrays), ``batch_size`` per step."""

    def __init__(self, rows, batch_size, seed):
        self.rows, self.batch_size, self.seed, self.cursor = rows, batch_size, seed, 0
        self.n = len(next(iter(rows.values())))

    def next(self, params, step):
        del params, step
        epochs, pos = np.divmod(self.cursor + np.arange(self.batch_size), self.n)
        orders = {int(e): np.random.default_rng([self.seed, int(e)]).permutation(self.n)
                  for e in np.unique(epochs)}
        index = np.asarray([orders[int(e)][p] for e, p in zip(epochs, pos)])
        self.cursor += self.batch_size
        return {k: v[index] for k, v in self.rows.items()}, {}

    def get_state(self):
        return {"cursor": self.cursor}

    def set_state(self, state):
        self.cursor = int(state["cursor"])


# ---------------------------------------------------------------- run

def _scores_in_chunks(fn, rows, chunk=256):
    n = len(rows["inputs"])
    out = []
    for s in range(0, n, chunk):
        part = {k: v[s:s + chunk] for k, v in rows.items()}
        m = len(part["inputs"])
        if m < chunk:  # pad to one shape: one compilation
            part = {k: np.concatenate([v, np.repeat(v[:1], chunk - m, axis=0)]) for k, v in part.items()}
        out.append(np.asarray(fn(part))[:m])
    return np.concatenate(out)


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    task = tasks.get("arithmetic", ops=cfg.ops, train_difficulty=tuple(cfg.digits),
                     ood_difficulty=(max(cfg.digits) + 1,) * 2)
    splits = task.splits(cfg.seed, cfg.n_gen_train + cfg.n_verify_problems, cfg.n_test, 0)
    gen_train, verify_problems = splits["train"][:cfg.n_gen_train], splits["train"][cfg.n_gen_train:]
    test = splits["test"]
    mesh = experiment_mesh(cfg.mesh)
    max_new = 2 * max(cfg.digits) + 3
    tok = BYTES  # the model's tokenizer (a byte model here)

    gen = train_sft(workdir / "generator", [{"prompt": e.prompt, "response": e.answer} for e in gen_train],
                    model_cfg=cfg.model, optim=cfg.gen_optim, mesh=mesh, progress=progress, tokenizer=tok,
                    sft=SFTConfig(batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                                  loop=LoopConfig(steps=cfg.gen_steps, seed=cfg.seed,
                                                  eval_every=50, checkpoint_every=cfg.gen_steps)))
    gen_params = gen.state.params
    key_train, key_test = jax.random.split(jax.random.key(cfg.seed + 1))
    sample = functools.partial(sample_solutions, gen_params, cfg.model, temperature=cfg.temperature,
                               max_new_tokens=max_new, tokenizer=tok)
    train_sols = sample([e.prompt for e in verify_problems], cfg.n_train_samples, key=key_train)
    test_sols = sample([e.prompt for e in test], cfg.n_best_of, key=key_test)
    train_items = [(e, s, task.verify(e, s)) for e, sols in zip(verify_problems, train_sols) for s in sols]
    test_correct = np.asarray([[task.verify(e, s) for s in sols] for e, sols in zip(test, test_sols)])

    # GenRM
    verify_records = [verification_record(e.prompt, s, bool(c)) for e, s, c in train_items]
    correct_records = [{"prompt": e.prompt, "response": s} for e, s, c in train_items if c]
    loop = LoopConfig(steps=cfg.verifier_steps, seed=cfg.seed, log_every=10,
                      eval_every=cfg.verifier_steps, checkpoint_every=cfg.verifier_steps)

    def genrm_normalize(sums):
        n = jnp.maximum(sums["count"], 1.0)
        return {"loss": sums["loss"] / n, "verify_nll": sums["verify_nll"] / n,
                "verify_accuracy": sums["verify_correct"] / n, "count": sums["count"]}

    genrm = fit(workdir / "genrm", name="genrm", loop=loop, optim=cfg.verifier_optim, mesh=mesh,
                init_params=gen_params, param_axes=transformer.param_axes,
                loss_sums_fn=functools.partial(genrm_loss_sums, model_cfg=cfg.model),
                source=GenRMSource(verify_records, correct_records, lam=cfg.lam,
                                   batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed,
                                   tokenizer=tok),
                normalize_fn=genrm_normalize, progress=progress)

    # Classifier head on the same verification prompts and labels.
    train_rows = verification_rows([e.prompt for e, _, _ in train_items], [s for _, s, _ in train_items],
                                   cfg.seq_len, tok)
    train_rows["label"] = np.asarray([c for _, _, c in train_items], np.float32)
    clf = fit(workdir / "classifier", name="classifier", loop=loop, optim=cfg.verifier_optim,
              mesh=mesh,
              init_params=classifier_init(gen_params, cfg.model.d_model), param_axes=classifier_axes,
              loss_sums_fn=functools.partial(classifier_loss_sums, model_cfg=cfg.model),
              source=RowSource(train_rows, cfg.batch_size, cfg.seed), progress=progress)

    # Best-of-N on the test problems.
    flat_problems = [e.prompt for e, sols in zip(test, test_sols) for _ in sols]
    test_rows = scoring_rows(flat_problems, [s for sols in test_sols for s in sols], cfg.seq_len, tok)
    shape = test_correct.shape
    yes_no = verdict_ids(tok)
    g_scores = _scores_in_chunks(lambda r: genrm_scores(genrm.state.params, r, cfg.model, *yes_no), test_rows)
    clf_fn = jax.jit(functools.partial(classifier_logits, model_cfg=cfg.model))
    c_scores = _scores_in_chunks(lambda r: clf_fn(clf.state.params, r), test_rows)
    g_scores, c_scores = g_scores.reshape(shape), c_scores.reshape(shape)
    rows = np.arange(shape[0])

    def auc(scores):  # ranking quality of a verifier over all test candidates
        s, y = scores.reshape(-1), test_correct.reshape(-1) > 0.5
        if y.all() or not y.any():
            return None  # undefined with one class
        ranks = np.argsort(np.argsort(s)) + 1
        return float((ranks[y].sum() - y.sum() * (y.sum() + 1) / 2) / (y.sum() * (~y).sum()))

    results = {
        "generator_sample_accuracy": float(test_correct.mean()),
        "verify_train_examples": len(train_items),
        "verify_train_positive_fraction": float(np.mean([c for _, _, c in train_items])),
        "first_sample_accuracy": float(test_correct[:, 0].mean()),
        "genrm_best_of_n_accuracy": float(test_correct[rows, g_scores.argmax(1)].mean()),
        "classifier_best_of_n_accuracy": float(test_correct[rows, c_scores.argmax(1)].mean()),
        "oracle_accuracy": float(test_correct.max(1).mean()),
        "genrm_auc": auc(g_scores),
        "classifier_auc": auc(c_scores),
        "genrm_final_loss": genrm.last("train/loss"),
        "classifier_final_loss": clf.last("train/loss"),
    }
    held, text = verdict(results)
    r = results
    results["report"] = "\n".join([
        (f"Arithmetic ({cfg.ops}), {tuple(cfg.digits)}-digit operands. Generator: {cfg.gen_steps} "
        f"CE steps, samples at temperature {cfg.temperature} are correct "
        f"{r['generator_sample_accuracy']:.1%} of the time. Verifiers (from the generator, "
        f"{cfg.verifier_steps} steps each) trained on {len(train_items)} labelled solutions "
        f"({r['verify_train_positive_fraction']:.1%} correct); GenRM lambda = {cfg.lam}."), "",
        f"| selection among N = {cfg.n_best_of} ({cfg.n_test} test problems) | accuracy |", "|---|---|",
        f"| first sample (no verifier) | {r['first_sample_accuracy']:.3f} |",
        f"| best-of-N by classifier score | {r['classifier_best_of_n_accuracy']:.3f} |",
        f"| best-of-N by GenRM p(Yes) | {r['genrm_best_of_n_accuracy']:.3f} |",
        f"| any correct (oracle) | {r['oracle_accuracy']:.3f} |", "",
        (f"Ranking AUC over all test candidates (None: one class only): GenRM {_fmt(r['genrm_auc'])}, "
        f"classifier {_fmt(r['classifier_auc'])}."), "",
        f"**Verdict: the claim {'held' if held else 'did not hold'}** ({text}).",
    ])
    return results


def _fmt(x):
    return "None" if x is None else f"{x:.3f}"


def verdict(r: dict) -> tuple[bool, str]:
    g, c, f = r["genrm_best_of_n_accuracy"], r["classifier_best_of_n_accuracy"], r["first_sample_accuracy"]
    return g > c and g > f, f"GenRM {g:.3f} vs classifier {c:.3f} vs first sample {f:.3f}"


def check(results_by_variant: dict) -> tuple[bool, str]:
    (r,) = results_by_variant.values()
    return verdict(r)
