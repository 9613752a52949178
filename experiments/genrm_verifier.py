"""Generative verifier (GenRM) vs a classifier-head verifier vs self-consistency for best-of-16
selection (Zhang et al. 2024, "Generative Verifiers: Reward Modeling as Next-Token Prediction").

Task: ``jaxlab.tasks`` arithmetic (``ops``, ``digits``-digit operands), one the warm-started
model can nearly solve: its samples are often right, and the best of 16 is right much more often
than one sample (room for a verifier to rerank).

Protocol (one seed; the seed draws the problems, the data order and the samples).
  1. Generator: the model (``model``: SmolLM2-135M-Instruct at the paper preset) fine-tuned
     with SFT (masked cross-entropy on the answer and its end of turn, one example per row) on
     ``n_warm`` problems (prompt -> bare answer, in SmolLM2's ChatML template) for
     ``warm_steps`` steps: the warm start that turns a model answering in sentences into one
     that nearly solves the task.
  2. Candidates: for each of ``n_verify_problems`` further training problems the generator
     samples ``n_train_samples`` solutions at ``temperature``; for each of ``n_test`` held-out
     test problems, ``n_best_of`` = 16. The task's exact verifier labels every solution.
  3. GenRM, initialised from the generator: next-token prediction on the verification examples
     (``jaxlab.data.chat.verification_record``: problem + solution + "\\n" + "Is the answer
     correct? " -> "Yes" / "No") plus ``lam`` times the SFT loss on the correct solutions,
     L = L_SFT(D_verify) + lam * L_SFT(D_correct), each a token mean over its own tokens
     (exact per step: the correct-solution rows carry the weight lam * N_verify / N_correct
     of the step, and the step divides by N_verify). Score r(x, y) = p("Yes") =
     softmax(logits)[Y] at the position that predicts the verdict when the first tokens of
     "Yes" and "No" differ (bytes "Y" / "N"; SmolLM2 "Yes" / "No" are one token each), else
     the whole-word probability of a teacher-forced row (``genrm_scores``).
  4. Classifier head, initialised from the generator, on the same verification prompts and
     labels: z = w . h + b on the final hidden state (after the final norm) at the same
     position, binary cross-entropy (the outcome reward model of ``jaxlab.ttc.scorers``), with the same steps,
     batch size and optimiser.
  5. Selection among the 16 samples of each test problem: the highest GenRM p("Yes"), the
     highest classifier z (``jaxlab.ttc.best_of_n``; a tie scores the mean of the tied
     candidates), and the majority vote over parsed answers (self-consistency,
     ``jaxlab.evals.scoring.majority_vote``; ties likewise). Per-problem accuracy of each,
     pass@16 (any sample right: the bound of every selector) and pass@1 (mean sample accuracy).

Claim (version 2: code, threshold and precondition fixed before the published smoke run and
before any paper run; version 1 was the single-run comparison of point accuracies). GenRM
best-of-16 is more accurate than the stronger of its two competitors. Effect =
acc(GenRM best-of-16) - acc(competitor), where the competitor is whichever of classifier
best-of-16 and majority@16 has the higher accuracy over all seeds and test problems; the
interval is the nested paired bootstrap over seeds and test problems
(``jaxlab.stats.paired_bootstrap_interval``); threshold 0, held when the 95% interval lies
above 0, not held when it lies at or below 0, otherwise inconclusive. Precondition "room to
rerank": the mean over (seed, problem) of pass@16 - maj@16 exceeds twice its standard error
(sd / sqrt(S * P)); without it no selector can beat majority and the claim cannot be judged.

Presets.
  smoke: a tiny byte-level transformer (1 layer, d_model 32) trained from a random init as the
    "warm start" (40 steps) on 1-digit + and -, 8 verifier-training and 8 test problems x 16
    samples, 10 verifier steps. It exercises every step of the protocol in seconds (the tests
    run it); the tiny generator barely solves the task, so its verdict says little (it may
    honestly be inconclusive). SmolLM2 is not used at smoke size: one 30-layer step costs
    over a minute on 2 CPU cores, and even a 2-layer cut would carry the 49,152-id
    unembedding and the model load into 2 seeds x (3 trainings + 512 samples + scoring),
    beyond the test budget.
  paper: SmolLM2-135M-Instruct, SFT warm start of 60 steps of 8 rows at lr 3e-5 on 1-2 digit
    addition (close to results/smollm2_finetune/sft, where such SFT takes greedy accuracy
    from 0.00 to 0.83; chosen before any run of this experiment), 1000 verifier
    training problems x 16 samples, 500 test problems x 16, 500 verifier steps, 3 seeds. It
    needs a GPU (on 2 CPU cores the verifier training alone would take hours):

    jaxlab run experiments/genrm_verifier.py --preset smoke --seeds 2 --publish   # CPU, minutes
    jaxlab run experiments/genrm_verifier.py --workdir runs/genrm_paper --preset paper --seeds 3 --publish
        # GPU: about 15 minutes on one H200 (estimated, not measured: per seed ~1 min of SFT,
        # 24,000 samples of <= 10 tokens, 2 x 500 verifier steps of 32 rows, 8,000 scored rows)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import stats, tasks, ttc
from jaxlab.data.chat import (
    encode_prompt,
    encode_record,
    pad_rows,
    verdict_ids,
    verification_record,
)
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.evals.scoring import answer_key, majority_vote
from jaxlab.losses.lm import cross_entropy_sums
from jaxlab.models import transformer
from jaxlab.peft.adapters import AdapterSpec
from jaxlab.peft.runs import trainer_adapter
from jaxlab.samplers import SampleConfig, generate, pad_prompts
from jaxlab.train.batch import apply_batch
from jaxlab.train.fit import LoopConfig, fit
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.sft import sft_loss_sums
from jaxlab.ttc.scorers import (genrm_scores, reward_init, reward_logits_jit, reward_loss_sums,
                                reward_param_axes, scores_in_chunks, scoring_rows, verification_rows)

CLAIM = ("Best-of-16 selection by GenRM p(\"Yes\") is more accurate than the stronger of classifier-head "
         "best-of-16 (trained on the same labelled samples) and majority vote over the 16 samples.")
CLAIM_VERSION = 2
REPORT_KEYS = ["genrm_best_of_n_accuracy", "classifier_best_of_n_accuracy", "majority_accuracy",
               "pass_at_1", "pass_at_n", "verify_train_positive_fraction"]
METHODS = ("genrm", "classifier", "majority")  # the selectors; "oracle" = pass@N
PRESETS = {
    "smoke": {"model": "tiny-random", "ops": "+-", "digits": (1, 1), "n_warm": 32, "warm_steps": 40,
              "warm_batch": 16, "warm_optim.lr": 3e-3, "warm_optim.warmup_steps": 10, "seq_len": 48,
              "max_new_tokens": 4, "n_verify_problems": 8, "n_train_samples": 16, "n_test": 8,
              "verifier_steps": 10, "batch_size": 16, "verifier_optim.lr": 1e-3,
              "verifier_optim.warmup_steps": 2, "sample_chunk": 128, "score_chunk": 128},
    "paper": {"model": "smollm2-135m-instruct", "ops": "+", "digits": (1, 2), "n_warm": 1000, "warm_steps": 60,
              "warm_batch": 8, "n_verify_problems": 1000, "n_train_samples": 16, "n_test": 500,
              "verifier_steps": 500, "batch_size": 32},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "genrm_verifier"
    model: str = "smollm2-135m-instruct"  # or "tiny-random" (a 1-layer byte model, random init)
    ops: str = "+"
    digits: tuple[int, int] = (1, 2)
    n_warm: int = 1000
    warm_steps: int = 60
    warm_batch: int = 8
    warm_optim: OptimConfig = OptimConfig(lr=3e-5, warmup_steps=5, schedule="constant", weight_decay=0.0)
    temperature: float = 1.0
    max_new_tokens: int = 10
    n_verify_problems: int = 1000
    n_train_samples: int = 16
    n_test: int = 500
    n_best_of: int = 16
    lam: float = 0.5
    verifier_steps: int = 500
    batch_size: int = 32
    seq_len: int = 96
    verifier_optim: OptimConfig = OptimConfig(lr=3e-5, warmup_steps=20, schedule="constant", weight_decay=0.0)
    # An adapter for the GenRM verifier on the frozen warm-started model (--set
    # genrm_peft.method=lora genrm_peft.rank=16); "none" fine-tunes every parameter.
    genrm_peft: AdapterSpec = AdapterSpec(method="none")
    sample_chunk: int = 2048  # rows per generate call (one compiled shape)
    score_chunk: int = 256    # rows per scoring call
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)  # --set mesh.data=8 or mesh.fsdp=8: 8 devices


def get_config() -> Config:
    return Config()


TINY = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
                          mlp_dim=64)


def _model(cfg: Config):
    """(model config, params, tokenizer) of ``cfg.model``."""
    if cfg.model == "tiny-random":
        return TINY, transformer.init(TINY, jax.random.key(cfg.seed)), BYTES
    from jaxlab.interop.models import load_model
    return load_model(cfg.model)


# ---------------------------------------------------------------- candidates

def sample_solutions(params, model_cfg, prompts: list[str], n: int, *, temperature: float,
                     max_new_tokens: int, key, tokenizer: Tokenizer = BYTES, chunk: int = 2048) -> list[list[str]]:
    """``n`` sampled completions (text before the first stop id) of each prompt. Rows are
    left-padded to one length and generated ``chunk`` at a time (the last chunk filled up
    with copies of row 0, so one compiled shape serves every call); chunk c uses
    fold_in(key, c)."""
    tok = tokenizer
    tokens, mask = pad_prompts([encode_prompt(p, tok) for p in prompts for _ in range(n)], pad_id=tok.pad_id)
    sample_cfg = SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                              stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id)
    texts = []
    for c, start in enumerate(range(0, len(tokens), chunk)):
        t, m = tokens[start:start + chunk], mask[start:start + chunk]
        k = len(t)
        if k < chunk:
            t = np.concatenate([t, np.repeat(t[:1], chunk - k, 0)])
            m = np.concatenate([m, np.repeat(m[:1], chunk - k, 0)])
        out = np.asarray(generate(params, model_cfg, t, m, jax.random.fold_in(key, c), sample_cfg).tokens)
        texts += [tok.decode(out[i], stop_at_eos=True).replace("\n", " ") for i in range(k)]
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def record_rows(records, seq_len: int, tokenizer: Tokenizer = BYTES) -> dict:
    """SFT records ({"prompt", "response"}) as right-padded rows, one example per row."""
    return pad_rows([encode_record(r, tokenizer) for r in records], seq_len, tokenizer)


class RowSource:
    """Shuffled epochs of fixed rows (a dict of [N, ...] arrays), ``batch_size`` per step."""

    uses_params = False

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


# ---------------------------------------------------------------- GenRM

class GenRMSource:
    """Each step: ``batch_size`` rows of verification examples and ``batch_size`` rows of
    correct solutions (one example per right-padded row, shuffled epochs: :class:`RowSource`).
    ``correct_scale`` [B] = lam * N_v / N_c on the correct rows (N_v, N_c: the step's target
    counts), so that summing verify_nll + scale * correct_nll and dividing by N_v gives
    L_SFT(D_verify) + lam * L_SFT(D_correct) exactly."""

    uses_params = False

    def __init__(self, verify_records, correct_records, *, lam, batch_size, seq_len, seed,
                 tokenizer: Tokenizer = BYTES):
        self.verify = RowSource(record_rows(verify_records, seq_len, tokenizer), batch_size, seed)
        self.correct = (RowSource(record_rows(correct_records, seq_len, tokenizer), batch_size, seed + 1)
                        if correct_records and lam > 0 else None)
        self.lam = lam

    def next(self, params, step):
        v, _ = self.verify.next(params, step)
        if self.correct is None:
            return {**v, "correct_scale": np.zeros(len(v["inputs"]), np.float32)}, {}
        c, _ = self.correct.next(params, step)
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


def _genrm_normalize(sums):
    n = jnp.maximum(sums["count"], 1.0)
    return {"loss": sums["loss"] / n, "verify_nll": sums["verify_nll"] / n,
            "verify_accuracy": sums["verify_correct"] / n, "count": sums["count"]}


def train_genrm(workdir, verify_records, correct_records, *, cfg: Config, loop: LoopConfig, model_cfg,
                init_params, mesh, tokenizer: Tokenizer = BYTES, progress: bool = True, base_path=None):
    """The GenRM verifier trained from ``init_params`` (resumable in ``workdir``): every
    parameter, or an adapter on them held frozen with ``cfg.genrm_peft`` (``base_path``, where
    they are saved, is recorded with the adapter); the result's ``params`` is the verifier."""
    def source():
        return GenRMSource(verify_records, correct_records, lam=cfg.lam, batch_size=cfg.batch_size,
                           seq_len=cfg.seq_len, seed=cfg.seed, tokenizer=tokenizer)

    def eva_batches():  # EVA reads the verifier's own batches (a separate reader)
        reader = source()
        return (reader.next(None, step)[0] for step in range(1, loop.steps + 1))

    init_params, adapter = trainer_adapter(cfg.genrm_peft, init_params, seed=loop.seed, base_path=base_path,
                                           model_cfg=model_cfg, eva_batches=eva_batches, progress=progress)
    return fit(workdir, name="genrm", loop=loop, optim=cfg.verifier_optim, mesh=mesh,
               init_params=init_params, adapter=adapter, param_axes=transformer.param_axes,
               loss_sums_fn=functools.partial(genrm_loss_sums, model_cfg=model_cfg), source=source(),
               normalize_fn=_genrm_normalize, progress=progress)


# ---------------------------------------------------------------- selection and statistics


def majority_per_problem(keys_PN: list[list], correct_PN: np.ndarray, k: int | None = None) -> np.ndarray:
    """maj@k of each problem over its first ``k`` samples (all by default), [P]
    (``jaxlab.evals.scoring.majority_vote``: ties score the share of tied answers that are right;
    no well-formed answer scores 0)."""
    k = correct_PN.shape[1] if k is None else k
    return np.asarray([majority_vote(keys[:k], list(c[:k])) for keys, c in zip(keys_PN, correct_PN)], np.float64)


def room_to_rerank(oracle_SP: np.ndarray, majority_SP: np.ndarray) -> tuple[bool, float, float]:
    """(passed, mean, se): d = pass@N - maj@N per (seed, problem); passed when
    mean(d) > 2 * se with se = sd(d) / sqrt(S * P) (sd with 1 degree of freedom removed)."""
    d = (np.asarray(oracle_SP, np.float64) - np.asarray(majority_SP, np.float64)).reshape(-1)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("inf")
    return bool(mean > 2.0 * se), mean, se


def auc(scores, labels) -> float | None:
    """Ranking AUC (Mann-Whitney) of scores against 0/1 labels; None with one class only."""
    s, y = np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1) > 0.5
    if y.all() or not y.any():
        return None
    order = np.argsort(s, kind="stable")
    ranks = np.empty(s.size)
    ranks[order] = np.arange(1, s.size + 1)
    for v in np.unique(s):  # mid-ranks for ties
        tied = s == v
        ranks[tied] = ranks[tied].mean()
    return float((ranks[y].sum() - y.sum() * (y.sum() + 1) / 2) / (y.sum() * (~y).sum()))


def _ks(n: int) -> list[int]:
    return sorted({2 ** i for i in range(int(math.log2(n)) + 1)} | {n})


# ---------------------------------------------------------------- run

def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    model_cfg, params, tok = _model(cfg)
    task = tasks.get("arithmetic", ops=cfg.ops, train_difficulty=tuple(cfg.digits),
                     ood_difficulty=(max(cfg.digits) + 1,) * 2)
    splits = task.splits(cfg.seed, cfg.n_warm + cfg.n_verify_problems, cfg.n_test, 0)
    warm, verify_problems = splits["train"][:cfg.n_warm], splits["train"][cfg.n_warm:]
    test = splits["test"]
    mesh = experiment_mesh(cfg.mesh)

    # 1. warm start: SFT (masked cross-entropy on the answer and its end of turn)
    gen = fit(workdir / "warm", name="warm", optim=cfg.warm_optim, mesh=mesh, init_params=params,
              param_axes=transformer.param_axes, progress=progress,
              loss_sums_fn=functools.partial(sft_loss_sums, model_cfg=model_cfg),
              source=RowSource(record_rows([{"prompt": e.prompt, "response": e.answer} for e in warm],
                                           cfg.seq_len, tok), cfg.warm_batch, cfg.seed),
              loop=LoopConfig(steps=cfg.warm_steps, seed=cfg.seed, log_every=10,
                              eval_every=cfg.warm_steps, checkpoint_every=cfg.warm_steps))
    gen_params = jax.device_get(gen.state.params)

    # 2. candidates
    key_train, key_test = jax.random.split(jax.random.key(cfg.seed + 1))
    sample = functools.partial(sample_solutions, gen_params, model_cfg, temperature=cfg.temperature,
                               max_new_tokens=cfg.max_new_tokens, tokenizer=tok, chunk=cfg.sample_chunk)
    train_sols = sample([e.prompt for e in verify_problems], cfg.n_train_samples, key=key_train)
    test_sols = sample([e.prompt for e in test], cfg.n_best_of, key=key_test)
    train_items = [(e, s, task.verify(e, s)) for e, sols in zip(verify_problems, train_sols) for s in sols]
    correct_PN = np.asarray([[task.verify(e, s) for s in sols] for e, sols in zip(test, test_sols)], np.float64)
    keys_PN = [[answer_key(task, s) for s in sols] for sols in test_sols]

    # 3. GenRM
    verify_records = [verification_record(e.prompt, s, bool(c)) for e, s, c in train_items]
    correct_records = [{"prompt": e.prompt, "response": s} for e, s, c in train_items if c]
    loop = LoopConfig(steps=cfg.verifier_steps, seed=cfg.seed, log_every=max(1, cfg.verifier_steps // 50),
                      eval_every=cfg.verifier_steps, checkpoint_every=cfg.verifier_steps)
    genrm = train_genrm(workdir / "genrm", verify_records, correct_records, cfg=cfg, loop=loop,
                        model_cfg=model_cfg, init_params=gen_params, mesh=mesh, tokenizer=tok,
                        progress=progress, base_path=workdir / "warm")

    # 4. classifier head on the same verification prompts and labels
    train_rows = verification_rows([e.prompt for e, _, _ in train_items], [s for _, s, _ in train_items],
                                   cfg.seq_len, tok)
    train_rows["label"] = np.asarray([c for _, _, c in train_items], np.float32)
    clf = fit(workdir / "classifier", name="classifier", loop=loop, optim=cfg.verifier_optim, mesh=mesh,
              init_params=reward_init(gen_params, model_cfg.d_model), param_axes=reward_param_axes,
              loss_sums_fn=functools.partial(reward_loss_sums, model_cfg=model_cfg),
              source=RowSource(train_rows, cfg.batch_size, cfg.seed), progress=progress)

    # 5. selection on the test problems
    flat_problems = [e.prompt for e, sols in zip(test, test_sols) for _ in sols]
    test_rows = scoring_rows(flat_problems, [s for sols in test_sols for s in sols], cfg.seq_len, tok)
    yes_no = verdict_ids(tok)
    genrm_params = genrm.params  # merged with the base under genrm_peft
    g_PN = scores_in_chunks(lambda r: genrm_scores(genrm_params, r, model_cfg, *yes_no), test_rows,
                             cfg.score_chunk).reshape(correct_PN.shape)
    c_PN = scores_in_chunks(lambda r: reward_logits_jit(clf.state.params, r, model_cfg), test_rows,
                             cfg.score_chunk).reshape(correct_PN.shape)
    per_problem = {"genrm": ttc.best_of_n(g_PN, correct_PN), "classifier": ttc.best_of_n(c_PN, correct_PN),
                   "majority": majority_per_problem(keys_PN, correct_PN), "oracle": correct_PN.max(1)}
    curve = {"genrm": ttc.best_of_k_curve(g_PN, correct_PN, _ks(cfg.n_best_of)),
             "classifier": ttc.best_of_k_curve(c_PN, correct_PN, _ks(cfg.n_best_of)),
             "majority": {k: float(majority_per_problem(keys_PN, correct_PN, k).mean()) for k in _ks(cfg.n_best_of)},
             "oracle": {k: float(stats.pass_at_k(cfg.n_best_of, correct_PN.sum(1).astype(int), k).mean())
                        for k in _ks(cfg.n_best_of)}}
    r = {
        "genrm_best_of_n_accuracy": float(per_problem["genrm"].mean()),
        "classifier_best_of_n_accuracy": float(per_problem["classifier"].mean()),
        "majority_accuracy": float(per_problem["majority"].mean()),
        "pass_at_1": float(correct_PN.mean()),
        "pass_at_n": float(per_problem["oracle"].mean()),
        "n_best_of": cfg.n_best_of, "n_test": len(test),
        "verify_train_examples": len(train_items),
        "verify_train_positive_fraction": float(np.mean([c for _, _, c in train_items])),
        "well_formed_fraction": float(np.mean([k is not None for keys in keys_PN for k in keys])),
        "genrm_auc": auc(g_PN, correct_PN), "classifier_auc": auc(c_PN, correct_PN),
        "genrm_losses": [m["train/loss"] for m in genrm.records if "train/loss" in m],
        "classifier_losses": [m["train/loss"] for m in clf.records if "train/loss" in m],
        "per_problem": {k: v.tolist() for k, v in per_problem.items()},
        "candidate_correct": correct_PN.astype(int).tolist(),
        "genrm_scores": g_PN.tolist(),
        "classifier_scores": c_PN.tolist(),
        "best_of_k": {m: {str(k): v for k, v in c.items()} for m, c in curve.items()},
        "test_examples": [{"prompt": e.prompt, "answer": e.answer, "samples": sols[:4]}
                          for e, sols in zip(test[:8], test_sols[:8])],
    }
    _plot_curve([r], workdir / "best_of_k.png")
    r["report"] = _seed_report(r, cfg)
    return r


def _seed_report(r: dict, cfg: Config) -> str:
    P = r["n_test"]
    lines = [(f"{cfg.model}, arithmetic ({cfg.ops}, {tuple(cfg.digits)}-digit operands); warm start "
              f"{cfg.warm_steps} SFT steps; {r['verify_train_examples']} labelled samples train the verifiers "
              f"({r['verify_train_positive_fraction']:.1%} correct); GenRM lambda = {cfg.lam}."), "",
             f"| selection among N = {r['n_best_of']} samples ({P} test problems) | accuracy | 95% Wilson |",
             "|---|---|---|"]
    for label, key in (("one sample (pass@1)", "pass_at_1"), ("majority vote (maj@N)", "majority_accuracy"),
                       ("best-of-N by classifier z", "classifier_best_of_n_accuracy"),
                       ("best-of-N by GenRM p(Yes)", "genrm_best_of_n_accuracy"),
                       ("any correct (pass@N)", "pass_at_n")):
        lo, hi = stats.wilson_interval(int(round(r[key] * P)), P)
        lines.append(f"| {label} | {r[key]:.3f} | [{lo:.3f}, {hi:.3f}] |")
    lines += ["", (f"Ranking AUC over all test candidates (None: one class only): GenRM {_fmt(r['genrm_auc'])}, "
                   f"classifier {_fmt(r['classifier_auc'])}. Ties and fractional majority scores round "
                   "to the nearest problem in the Wilson column."), "",
              "![best-of-k](best_of_k.png)"]
    return "\n".join(lines)


def _fmt(x):
    return "None" if x is None else f"{x:.3f}"


def _plot_curve(per_seed: list[dict], path: Path) -> None:
    """Accuracy against the number of samples k, averaged over seeds, per selector."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    labels = {"genrm": "GenRM best-of-k", "classifier": "classifier best-of-k", "majority": "majority@k",
              "oracle": "pass@k"}
    for m, label in labels.items():
        ks = sorted(int(k) for k in per_seed[0]["best_of_k"][m])
        ys = [np.mean([r["best_of_k"][m][str(k)] for r in per_seed]) for k in ks]
        ax.plot(ks, ys, marker="o", label=label, linestyle="--" if m == "oracle" else "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem, k")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"best-of-k ({len(per_seed)} seed{'s' if len(per_seed) > 1 else ''})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- claim

def _arrays(per_seed: list[dict]) -> dict:
    return {m: np.asarray([r["per_problem"][m] for r in per_seed], np.float64) for m in METHODS + ("oracle",)}


def claim_verdict(runs: dict):
    """The three-way verdict of the claim (module docstring), from the per-problem accuracies
    of every seed."""
    per_seed = next(iter(runs.values()))
    a = _arrays(per_seed)
    competitor = "classifier" if a["classifier"].mean() >= a["majority"].mean() else "majority"
    r = stats.paired_bootstrap_interval(a["genrm"], a[competitor])
    room, mean, se = room_to_rerank(a["oracle"], a["majority"])
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=(f"GenRM best-of-{per_seed[0]['n_best_of']} minus {competitor} (the stronger competitor), "
              f"nested paired bootstrap over {r['seeds']} seeds x {r['problems']} test problems"),
        preconditions=[("room to rerank", room,
                        f"pass@N - maj@N = {mean:.4f}, 2 SE = {2 * se:.4f} over {a['oracle'].size} "
                        "(seed, problem) pairs")])


def summarize(results: dict, workdir: Path) -> str:
    """Pooled accuracies of every selector with paired intervals against GenRM, and the
    best-of-k curve over seeds."""
    per_seed = next(iter(results.values()))
    if not isinstance(per_seed, list):
        per_seed = [per_seed]
    a = _arrays(per_seed)
    lines = ["## Selection accuracy over all seeds", "",
             "| selector | accuracy | GenRM minus it [95% paired bootstrap over seeds x problems] |",
             "|---|---|---|"]
    for m, label in (("genrm", "GenRM best-of-N"), ("classifier", "classifier best-of-N"),
                     ("majority", "majority vote"), ("oracle", "pass@N (bound)")):
        d = "" if m == "genrm" else "{effect:+.3f} [{low:+.3f}, {high:+.3f}]".format(
            **stats.paired_bootstrap_interval(a["genrm"], a[m]))
        lines.append(f"| {label} | {a[m].mean():.3f} | {d} |")
    _plot_curve(per_seed, Path(workdir) / "best_of_k.png")
    lines += ["", "![best-of-k over seeds](best_of_k.png)", ""]
    return "\n".join(lines)
