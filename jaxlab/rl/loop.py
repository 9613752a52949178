"""The RL loop: sample rollouts from the current policy, score them with the task verifiers,
and update with a clipped policy-gradient loss (GRPO / DAPO / Dr. GRPO / RLOO advantages).

One rollout batch (``prompts_per_step`` groups of ``group_size`` samples) serves
``ppo_epochs`` consecutive optimizer steps: the first is on-policy (ratio 1, old log-probs =
the sampled ones), the later ones are off-policy by the updates in between, which is where the
clip range (and clip-higher, eps_high > eps_low) acts.

Per rollout (all on the host, deterministic given the seed and the rollout index):

    select prompts (a pass-rate curriculum or uniformly)   -> sample G completions each
    reward r = s + format_coef * well_formed [+ overlong_coef * R_len  ("soft")]
        s = correct (1/0, the task's exact verifier)                    reward "exact"
          = task.reward(example, response) in [0, 1], partial credit    reward "partial"
            (doc_extract: field F1; a task without partial credit: its 1/0 verify)
    dynamic sampling: keep groups whose task score s varies, sample more prompts (at most
        max_sample_rounds rounds); missing groups become fully masked rows (they add nothing).
        "exact": answers neither all correct nor all wrong (0 < sum correct < G, DAPO's
        filter). "partial": std_G(s) > 0, e.g. F1s of 0.4, 0.5, 0.8 in a group none of which
        is exact (their advantages are not 0, and DAPO's filter would drop the group), while a
        group of equal F1s (all 0.5) is dropped. Both filter on s, never on the shaping terms
        (format, overlong), so a format reward cannot keep a group whose answers score alike.
        Logged: groups_sampled and groups_sampled_zero_std (counts of sampled groups and of
        those with equal rewards r, i.e. all advantages 0), groups_zero_std (their ratio: the
        zero-advantage share a batch would have without dynamic sampling), groups_uniform
        (sampled groups whose s does not vary), groups_filtered, batch_zero_std (the trained
        batch's groups with all advantages 0, filler included: the share with dynamic
        sampling, or without it, where the batch is the sampled groups)
    advantages per group; overlong "mask": truncated completions leave the loss
    rows: prompt + completion, loss mask, old log-probs, advantages (see jaxlab.rl.rollout)

mode "reflect" (Reflect, Retry, Reward; :mod:`jaxlab.rl.reflect`): each selected prompt gets
one first attempt; each failed one becomes a group of G reflection + retry samples, rewarded by
the retry's score (as above), with the loss on the reflection tokens only.

Several devices or processes: the rollout's rows are sampled as one SPMD program sharded over
the mesh's batch axes (each device samples its share, with the same key as one device would
use), each process scores its contiguous share of the rows, and the rewards are gathered, so
every process holds the whole rollout and computes the same groups, filters and advantages;
each feeds its share of the training rows to the step. The result is the one process's.

Resume: the source's state (rollout counter, curriculum) is checkpointed; a rollout batch is
resampled from the restored params, so a run resumed at a step that starts a rollout (a
multiple of ppo_epochs, e.g. loop.checkpoint_every a multiple of it) continues exactly.

The tokenizer (default: bytes) encodes prompts with its chat template, decodes completions and
gives the stop and pad ids (:meth:`RLConfig.sample_config`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

import jax
import numpy as np

from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.losses import policy as policy_lib
from jaxlab import models
from jaxlab.models import transformer
from jaxlab.peft.adapters import AdapterSpec
from jaxlab.peft.runs import trainer_adapter
from jaxlab.rl import reflect as reflect_lib
from jaxlab.rl.curriculum import PassRateCurriculum
from jaxlab.rl.rollout import (build_rows, decode_response, default_sample_config, pass_at_k,
                               policy_logprobs, sample_completions, sampled_responses,
                               score_responses, well_formed)
from jaxlab.rl.shaping import OVERLONG, informative_groups, mixed_correctness_groups, soft_overlong_penalty
from jaxlab.train import distributed
from jaxlab.train import sharding as shd
from jaxlab.train.fit import FitResult, LoopConfig, fit
from jaxlab.train.optim import OptimConfig

ADVANTAGES = {"grpo": policy_lib.grpo_advantages, "dr_grpo": policy_lib.dr_grpo_advantages,
              "rloo": policy_lib.rloo_advantages}
Advantage = Literal["grpo", "dr_grpo", "rloo"]
Aggregation = Literal["token-mean", "seq-mean-token-mean", "seq-sum-max-length"]
RatioLevel = Literal["token", "sequence"]
KLKind = Literal["k1", "k2", "k3"]
Overlong = Literal["none", "mask", "soft"]
Reward = Literal["exact", "partial"]
REWARDS = get_args(Reward)
Mode = Literal["direct", "reflect"]
MODES = get_args(Mode)
# the choice types name exactly the library's choices
assert set(get_args(Advantage)) == set(ADVANTAGES) and get_args(Aggregation) == policy_lib.AGGREGATIONS
assert get_args(RatioLevel) == policy_lib.RATIO_LEVELS and get_args(KLKind) == policy_lib.KL_KINDS
assert get_args(Overlong) == OVERLONG


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """RL settings. GRPO: eps_low = eps_high = 0.2, no dynamic sampling; DAPO: eps_high 0.28,
    dynamic_sampling, aggregation "token-mean", overlong "soft" (or "mask"). reward: "exact"
    (the verifier's 1/0) or "partial" (the task's partial credit; module docstring). loop: steps, seed,
    grad_accum and intervals (:class:`jaxlab.train.fit.LoopConfig`; the seed also draws the
    rollouts). peft: an adapter trained on the frozen starting params, which are also the KL
    reference (``--set rl.peft.method=lora rl.peft.rank=16``); method "none" (the default)
    trains every parameter. EVA is refused: RL has no fixed data to take activations from
    (initialise it in an SFT warm start instead)."""
    prompts_per_step: int = 8
    group_size: int = 8
    ppo_epochs: int = 1
    max_new_tokens: int = 16
    temperature: float = 1.0
    advantage: Advantage = "grpo"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None
    aggregation: Aggregation = "token-mean"
    ratio_level: RatioLevel = "token"
    kl_coef: float = 0.0
    kl_kind: KLKind = "k3"
    entropy_coef: float = 0.0
    format_coef: float = 0.0
    reward: Reward = "exact"
    dynamic_sampling: bool = False
    max_sample_rounds: int = 3
    overlong: Overlong = "none"
    overlong_buffer: int = 4
    overlong_coef: float = 1.0
    curriculum: bool = False
    curriculum_cooldown: int = 8
    mode: Mode = "direct"
    reflect_max_tokens: int = 16
    pass_k: int = 4
    loop: LoopConfig = LoopConfig(steps=40, log_every=1, eval_every=10, checkpoint_every=50)
    peft: AdapterSpec = AdapterSpec(method="none")

    def __post_init__(self):
        if self.peft.method == "eva":
            raise ValueError("rl.peft.method='eva' is not supported: EVA initialises from the "
                             "activations of fixed training data, which RL does not have; train an "
                             "EVA adapter in the SFT warm start instead")
        for name in ("prompts_per_step", "group_size", "ppo_epochs", "max_new_tokens",
                     "max_sample_rounds", "pass_k", "reflect_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"rl.{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"rl.group_size must be >= 2 (advantages compare samples of a "
                             f"group), got {self.group_size}")
        if not self.temperature > 0:
            raise ValueError(f"rl.temperature must be > 0 (sampling), got {self.temperature}")
        checks = (("advantage", self.advantage, tuple(ADVANTAGES)), ("overlong", self.overlong, OVERLONG),
                  ("mode", self.mode, MODES), ("reward", self.reward, REWARDS),
                  ("aggregation", self.aggregation, policy_lib.AGGREGATIONS),
                  ("ratio_level", self.ratio_level, policy_lib.RATIO_LEVELS),
                  ("kl_kind", self.kl_kind, policy_lib.KL_KINDS))
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"rl.{name}={value!r} is not one of {allowed}")
        if self.overlong == "soft" and not 0 < self.overlong_buffer <= self.max_new_tokens:
            raise ValueError(f"rl.overlong_buffer={self.overlong_buffer} must be in "
                             f"(0, max_new_tokens={self.max_new_tokens}]")
        if self.pass_k > self.group_size:
            raise ValueError(f"rl.pass_k={self.pass_k} must be <= group_size={self.group_size}")

    def sample_config(self, tokenizer: Tokenizer = BYTES):
        """Sampling of answers: the RL temperature, stopping at the tokenizer's stop ids."""
        return default_sample_config(self.max_new_tokens, self.temperature, tokenizer)

    def reflect_sample_config(self, tokenizer: Tokenizer = BYTES, stop_tokens: tuple | None = None):
        """Sampling of reflections: up to ``reflect_max_tokens``, stopping at a newline or a
        stop id (``stop_tokens``: :func:`jaxlab.rl.reflect.reflect_stop_tokens`, computed when
        not given)."""
        stops = reflect_lib.reflect_stop_tokens(tokenizer) if stop_tokens is None else stop_tokens
        return dataclasses.replace(default_sample_config(self.reflect_max_tokens, self.temperature, tokenizer),
                                   stop_tokens=stops)

    @property
    def rows(self) -> int:
        return self.prompts_per_step * self.group_size


def row_width(examples: Sequence, rl: RLConfig, tokenizer: Tokenizer = BYTES) -> int:
    """Columns a training row needs for the longest prompt, rounded up to a multiple of 8."""
    longest = max(len(encode_prompt(ex.prompt, tokenizer)) for ex in examples)
    if rl.mode == "reflect":
        longest += rl.max_new_tokens + len(tokenizer.encode(reflect_lib.REFLECT_PROMPT)) \
            + rl.reflect_max_tokens + len(tokenizer.encode(reflect_lib.RETRY_PROMPT))
    width = longest + rl.max_new_tokens - 1
    return -(-width // 8) * 8


def rl_loss_sums(params: dict, batch: dict, key: jax.Array, frozen: dict | None = None, *,
                 model_cfg: transformer.Config, rl: RLConfig) -> dict:
    """Policy-loss sums of a rollout batch: log-probs recomputed under the sampling
    distribution, then :func:`jaxlab.losses.policy.policy_loss_sums` (``frozen``: the
    reference params for the KL term)."""
    del key
    sample = rl.sample_config()  # the processing of the logits (stop ids play no part)
    logp_BW, entropy_BW = policy_logprobs(params, batch, model_cfg, sample)
    ref_logp_BW = None
    if frozen is not None:
        ref_logp_BW = jax.lax.stop_gradient(policy_logprobs(frozen, batch, model_cfg, sample)[0])
    return policy_lib.policy_loss_sums(
        logp_BW, batch["old_logp"], batch["advantages"], batch["mask"], eps_low=rl.eps_low,
        eps_high=rl.eps_high, dual_clip=rl.dual_clip, ratio_level=rl.ratio_level,
        aggregation=rl.aggregation, max_len=rl.max_new_tokens, kl_coef=rl.kl_coef,
        ref_logp_BT=ref_logp_BW, kl_kind=rl.kl_kind, entropy_BT=jax.lax.stop_gradient(entropy_BW)
        if not rl.entropy_coef else entropy_BW, entropy_coef=rl.entropy_coef)


def normalize_rl_sums(sums: dict) -> dict:
    """:func:`jaxlab.losses.policy.normalize_policy_sums` as a metrics dict with ``loss``."""
    loss, metrics = policy_lib.normalize_policy_sums(sums)
    return {"loss": loss, **metrics}


class RolloutSource:
    """A :class:`jaxlab.train.fit.BatchSource` that samples rollout batches from the current
    params (module docstring)."""

    def __init__(self, examples: Sequence, *, model_cfg: transformer.Config, rl: RLConfig,
                 width: int | None = None, tokenizer: Tokenizer = BYTES, mesh=None):
        if len(examples) == 0:
            raise ValueError("RL needs at least one prompt")
        self.examples, self.model_cfg, self.rl, self.tok = list(examples), model_cfg, rl, tokenizer
        self.mesh = mesh
        self.prompts = [encode_prompt(ex.prompt, tokenizer) for ex in self.examples]
        self.width = row_width(self.examples, rl, tokenizer) if width is None else width
        self.sample = rl.sample_config(tokenizer)
        self.reflect_sample = rl.reflect_sample_config(tokenizer) if rl.mode == "reflect" else None
        self.curriculum = PassRateCurriculum(len(self.examples), enabled=rl.curriculum,
                                             cooldown=rl.curriculum_cooldown)
        self.rollouts = 0  # rollout batches drawn so far
        self._cache = None  # (rollout index, batch, metrics)
        self._last_return = None

    # --- groups ------------------------------------------------------------------------
    def _score(self, exs, texts):
        """(rewards r, correct, task score s) of responses (module docstring); dynamic sampling
        filters on s."""
        rl = self.rl
        if rl.reward == "exact":
            rewards, correct = score_responses(exs, texts, format_coef=rl.format_coef)
            return rewards, correct, correct
        credit, correct = score_responses(exs, texts, partial=True)
        rewards = credit + np.float32(rl.format_coef) * well_formed(exs, texts) if rl.format_coef else credit.copy()
        return rewards, correct, credit

    def _direct_groups(self, params, idx, key):
        rl, G = self.rl, self.rl.group_size
        prompts = [self.prompts[i] for i in idx for _ in range(G)]
        exs = [self.examples[i] for i in idx for _ in range(G)]
        out = sample_completions(params, self.model_cfg, prompts, key, self.sample, mesh=self.mesh)
        share = distributed.process_share(len(prompts))  # each process scores its rows
        texts = [decode_response(t, m, self.tok) for t, m in zip(out["tokens"][share], out["mask"][share])]
        rewards, correct, score = map(distributed.allgather_rows, self._score(exs[share], texts))
        if rl.overlong == "soft":
            rewards = rewards + rl.overlong_coef * soft_overlong_penalty(
                out["lengths"], rl.max_new_tokens, rl.overlong_buffer)
        tokens, masks, logps = sampled_responses(out)
        return {"prompts": prompts, "tokens": tokens, "masks": masks, "logps": logps,
                "rewards": rewards.reshape(-1, G), "correct": correct.reshape(-1, G),
                "score": score.reshape(-1, G), "lengths": out["lengths"].reshape(-1, G),
                "truncated": out["truncated"].reshape(-1, G), "extra": {}}

    def _reflect_groups(self, params, idx, key):
        rl, G = self.rl, self.rl.group_size
        k_first, k_retry = jax.random.split(key)
        first = sample_completions(params, self.model_cfg, [self.prompts[i] for i in idx], k_first, self.sample)
        texts = [decode_response(t, m, self.tok) for t, m in zip(first["tokens"], first["mask"])]
        first_correct = score_responses([self.examples[i] for i in idx], texts)[1]
        failed = [j for j in range(len(idx)) if not first_correct[j]]
        extra = {"first_try": float(first_correct.mean()), "failed": len(failed)}
        if not failed:
            return None, extra
        contexts = [reflect_lib.reflection_context(self.examples[idx[j]].prompt,
                                                    first["tokens"][j, :first["lengths"][j]], self.tok)
                    for j in failed for _ in range(G)]
        exs = [self.examples[idx[j]] for j in failed for _ in range(G)]
        out = reflect_lib.reflect_and_retry(params, self.model_cfg, contexts, k_retry,
                                            reflect_cfg=self.reflect_sample, answer_cfg=self.sample,
                                            tokenizer=self.tok)
        rewards, correct, score = self._score(exs, out["answer_text"])
        tokens, masks, logps = reflect_lib.reflection_responses(out)
        lengths = np.array([len(f) for f in out["reflection"]])
        extra["retry_success"] = float(correct.mean())
        return {"prompts": contexts, "tokens": tokens, "masks": masks, "logps": logps,
                "rewards": rewards.reshape(-1, G), "correct": correct.reshape(-1, G),
                "score": score.reshape(-1, G), "lengths": lengths.reshape(-1, G),
                "truncated": out["truncated"].reshape(-1, G),
                "extra": extra}, extra

    # --- one rollout batch ------------------------------------------------------------
    def sample_batch(self, params, rollout: int) -> tuple[dict, dict]:
        rl, G, P = self.rl, self.rl.group_size, self.rl.prompts_per_step
        t0 = time.perf_counter()
        kept, seen, rounds, extras = [], [], 0, []
        n_groups = n_informative = n_mixed = 0
        for rnd in range(rl.max_sample_rounds if rl.dynamic_sampling else 1):
            rounds += 1
            rng = np.random.default_rng([rl.loop.seed, rollout, rnd])
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(rl.loop.seed), rollout), rnd)
            idx = self.curriculum.select(rng, P, rollout)
            if rl.mode == "direct":
                groups = self._direct_groups(params, idx, key)
                self.curriculum.update(idx, groups["correct"].mean(axis=1), rollout)
            else:
                groups, extra = self._reflect_groups(params, idx, key)
                extras.append(extra)
                if groups is None:
                    continue
            seen.append(groups)
            informative = informative_groups(groups["rewards"])  # std(r) > 0: some advantage != 0
            if rl.reward == "exact":
                mixed = mixed_correctness_groups(groups["correct"])  # 0 < correct < G
            else:
                mixed = informative_groups(groups["score"])  # std(s) > 0
            n_groups += len(informative)
            n_informative += int(informative.sum())
            n_mixed += int(mixed.sum())
            for g in range(len(mixed)):
                if mixed[g] or not rl.dynamic_sampling:
                    kept.append((groups, g))
            if len(kept) >= P:
                break
        kept = kept[:P]
        prompts, tokens, masks, logps, rewards = [], [], [], [], []
        for groups, g in kept:
            rows = range(g * G, (g + 1) * G)
            prompts += [groups["prompts"][r] for r in rows]
            tokens += [groups["tokens"][r] for r in rows]
            logps += [groups["logps"][r] for r in rows]
            trunc = groups["truncated"][g]
            masks += [groups["masks"][r] * (0.0 if (rl.overlong == "mask" and trunc[r - g * G]) else 1.0)
                      for r in rows]
            rewards.append(groups["rewards"][g])
        missing = P - len(kept)
        if missing:  # fully masked filler rows: they add nothing to any sum
            filler = encode_prompt("", self.tok)
            prompts += [filler] * (missing * G)
            tokens += [np.array([self.tok.eos_id], np.int32)] * (missing * G)
            masks += [np.zeros(1, np.float32)] * (missing * G)
            logps += [np.zeros(1, np.float32)] * (missing * G)
            rewards += [np.zeros(G, np.float32)] * missing
        rewards_PG = np.stack(rewards)
        adv_PG = np.asarray(ADVANTAGES[rl.advantage](rewards_PG), np.float32)
        batch = build_rows(prompts, tokens, masks, logps, self.width, self.tok)
        batch["advantages"] = adv_PG.reshape(-1)

        metrics = {"time_rollout_s": time.perf_counter() - t0, "sample_rounds": float(rounds),
                   "groups_kept": float(len(kept))}
        if seen:
            correct = np.concatenate([s["correct"] for s in seen])
            raw = np.concatenate([s["rewards"] for s in seen])
            metrics.update({
                "reward": float(raw.mean()), "pass_at_1": float(correct.mean()),
                f"pass_at_{rl.pass_k}": float(np.mean([pass_at_k(G, int(c), rl.pass_k) for c in correct.sum(1)])),
                "response_length": float(np.concatenate([s["lengths"] for s in seen]).mean()),
                "truncated": float(np.concatenate([s["truncated"] for s in seen]).mean()),
                "groups_sampled": float(n_groups), "groups_sampled_zero_std": float(n_groups - n_informative),
                "groups_zero_std": 1.0 - n_informative / max(n_groups, 1),
                "groups_uniform": 1.0 - n_mixed / max(n_groups, 1),
                "groups_filtered": (n_groups - min(n_mixed, P)) / max(n_groups, 1)
                if rl.dynamic_sampling else 0.0,
                "batch_zero_std": 1.0 - float(informative_groups(rewards_PG).sum()) / P,
            })
        if rl.curriculum:
            metrics["curriculum_active"] = self.curriculum.share_active()
        if extras:
            metrics["first_try"] = float(np.mean([e["first_try"] for e in extras]))
            rs = [e["retry_success"] for e in extras if "retry_success" in e]
            if rs:
                metrics["retry_success"] = float(np.mean(rs))
        return batch, metrics

    # --- BatchSource ----------------------------------------------------------------------
    def next(self, params, step: int):
        """This process's rows of rollout ``(step - 1) // ppo_epochs`` (every row in a single
        process) and the rollout's metrics."""
        rollout = (step - 1) // self.rl.ppo_epochs
        now = time.perf_counter()
        update_s = None if self._last_return is None else now - self._last_return
        if self._cache is None or self._cache[0] != rollout:
            batch, metrics = self.sample_batch(params, rollout)
            self._cache = (rollout, batch, metrics)
            self.rollouts = rollout + 1
        _, batch, metrics = self._cache
        share = distributed.process_share(self.rl.rows)
        batch = {k: v[share] for k, v in batch.items()}
        metrics = dict(metrics)
        if update_s is not None:
            metrics["time_update_s"] = update_s
        self._last_return = time.perf_counter()
        return batch, metrics

    def get_state(self):
        return {"rollouts": self.rollouts, "curriculum": self.curriculum.get_state()}

    def set_state(self, state):
        self.rollouts = int(state["rollouts"])
        self.curriculum.set_state(state["curriculum"])
        self._cache = None


def train_rl(workdir: str | Path, examples: Sequence, *, model_cfg: transformer.Config, rl: RLConfig,
             optim: OptimConfig, mesh, init_params: Callable | dict, ref_params: dict | None = None,
             evaluate: Callable[[dict, int], dict] | None = None, progress: bool = True,
             tokenizer: Tokenizer = BYTES, base_path: str | Path | None = None) -> FitResult:
    """Trains the policy with RL on task ``examples`` (:class:`jaxlab.tasks.Example`) in
    ``workdir`` (resumable), starting from ``init_params`` (a params pytree, e.g. an SFT warm
    start, or a function of a key). ``ref_params`` is the frozen reference of the KL term
    (needed when ``rl.kl_coef > 0``). With ``rl.peft`` an adapter trains on ``init_params``
    held frozen, which are the KL reference too (``ref_params`` must then be None or
    ``init_params``); ``base_path`` is recorded in the checkpoints, and ``FitResult.params`` is
    the merged policy."""
    adapter = None
    if rl.peft.enabled:
        if ref_params is not None and ref_params is not init_params:
            raise ValueError("with rl.peft the KL reference is the frozen base (init_params); "
                             "leave ref_params None")
        init_params, adapter = trainer_adapter(rl.peft, init_params, seed=rl.loop.seed, base_path=base_path,
                                               reference_is_base=bool(rl.kl_coef), model_cfg=model_cfg,
                                               progress=progress)
        ref_params = None
    elif rl.kl_coef and ref_params is None:
        raise ValueError(f"rl.kl_coef={rl.kl_coef} needs ref_params (the reference policy)")
    divisor = shd.batch_divisor(mesh) * rl.loop.grad_accum
    if rl.rows % divisor:
        raise ValueError(f"prompts_per_step x group_size = {rl.rows} rows must divide by the data "
                         f"devices x grad_accum = {divisor}")
    if rl.mode == "reflect" and jax.process_count() > 1:
        raise ValueError("rl.mode='reflect' runs in one process (its retries are not sharded "
                         "across processes); use mode 'direct' for a multi-process run")
    source = RolloutSource(examples, model_cfg=model_cfg, rl=rl, tokenizer=tokenizer, mesh=mesh)
    return fit(workdir, name=f"rl-{rl.mode}", loop=rl.loop, optim=optim, mesh=mesh,
               init_params=init_params, param_axes=models.param_axes(model_cfg),
               loss_sums_fn=functools.partial(rl_loss_sums, model_cfg=model_cfg, rl=rl),
               source=source, evaluate=evaluate, frozen=ref_params if rl.kl_coef and adapter is None else None,
               normalize_fn=normalize_rl_sums, progress=progress, adapter=adapter)
