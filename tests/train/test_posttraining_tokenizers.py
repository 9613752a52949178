"""Every post-training trainer runs and learns with a byte-level BPE built here (no downloads;
"plain" template, ids unlike the bytes'): SFT and DFT, the DPO family, GenRM, and RL (GRPO,
DAPO, Reflect-Retry-Reward). One tiny model and one shared SFT warm start, which also learns
the reflect-and-retry format (as experiments/reflect_retry_reward.py does). ChatML rendering
is checked in tests/data/test_chat_template.py and, through the trainers, on SmolLM2
(tests/train/test_smollm2_trainers.py). (With the byte tokenizer,
each trainer's own tests check the same: tests/train/test_sft.py, test_dpo.py,
tests/rl/, tests/experiments/test_genrm_verifier.py.)"""

import dataclasses
import math
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="needs the tokenizers package")

from tokenizer_fixtures import bpe_tokenizer, vocab_for  # noqa: E402

from jaxlab import tasks as tasks_lib  # noqa: E402
from jaxlab.cli import load_experiment  # noqa: E402
from jaxlab.data.chat import verdict_ids, verification_record  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.rl import RLConfig, RolloutSource, policy_logprobs, train_rl  # noqa: E402
from jaxlab.rl.reflect import REFLECT_PROMPT  # noqa: E402
from jaxlab.train import sharding as shd  # noqa: E402
from jaxlab.train.dpo import DPOConfig, pair_sequence_logprobs, train_dpo  # noqa: E402
from jaxlab.train.fit import LoopConfig, fit  # noqa: E402
from jaxlab.train.optim import OptimConfig  # noqa: E402
from jaxlab.train.sft import SFTConfig, train_sft  # noqa: E402

GENRM = Path(__file__).resolve().parents[2] / "experiments" / "genrm_verifier.py"
SEQ = 32


@dataclasses.dataclass
class Setup:
    tok: object
    cfg: transformer.Config
    mesh: object
    examples: list
    warm: object  # FitResult of the shared SFT warm start


def _losses(result, key="train/loss"):
    return [r[key] for r in result.records if key in r]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    tok = bpe_tokenizer("plain")
    cfg = transformer.Config(vocab_size=vocab_for(tok), d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                             head_dim=16, mlp_dim=64)
    mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    task = tasks_lib.get("arithmetic", ops="+", train_difficulty=(1, 1), ood_difficulty=(2, 2))
    splits = task.splits(0, 40, 0, 16)
    examples = splits["train"] + splits["ood"]  # 1-digit sums, then 2-digit ones it often fails
    records = [{"prompt": e.prompt, "response": e.answer} for e in splits["train"]]
    for i, e in enumerate(splits["train"][:20]):  # a wrong first answer, a reflection, the retry
        wrong = str(int(e.answer) + 1 + i % 3)
        records.append({"prompt": e.prompt + wrong + REFLECT_PROMPT, "response": f"{e.prompt}\nRetry:{e.answer}"})
    warm = train_sft(tmp_path_factory.mktemp("warm"), records, model_cfg=cfg, mesh=mesh, progress=False,
                     sft=SFTConfig(batch_size=8, seq_len=SEQ,
                                   loop=LoopConfig(steps=60, log_every=10, eval_every=50,
                                                   checkpoint_every=100)),
                     optim=OptimConfig(lr=1e-2, warmup_steps=10), tokenizer=tok)
    return Setup(tok, cfg, mesh, examples, warm)


def test_sft_then_dft_lower_their_losses(setup, tmp_path):
    losses = _losses(setup.warm)
    assert losses[-1] < 0.5 * losses[0]
    records = [{"prompt": e.prompt, "response": e.answer} for e in setup.examples]
    dft = train_sft(tmp_path, records, model_cfg=setup.cfg, mesh=setup.mesh, progress=False,
                    sft=SFTConfig(loss="dft", batch_size=8, seq_len=SEQ,
                                  loop=LoopConfig(steps=8, log_every=1, eval_every=50,
                                                  checkpoint_every=100)),
                    optim=OptimConfig(lr=3e-3, warmup_steps=0), init_params=setup.warm.state.params,
                    tokenizer=setup.tok)
    d = _losses(dft)
    assert np.mean(d[-3:]) < np.mean(d[:3])


@pytest.mark.parametrize("loss_type", ["dpo", "simpo"])  # with and without a reference
def test_preference_training_raises_the_chosen_over_rejected_gap(setup, tmp_path, loss_type):
    pairs = [{"prompt": e.prompt, "chosen": e.answer, "rejected": str(int(e.answer) + 1)}
             for e in setup.examples[:16]]
    params = setup.warm.state.params
    lp = lambda p: pair_sequence_logprobs(p, setup.cfg, pairs, seq_len=SEQ, batch_size=16,  # noqa: E731
                                          tokenizer=setup.tok)
    gap = lambda x: float(np.mean(x["chosen"] - x["rejected"]))  # noqa: E731
    before = gap(lp(params))
    result = train_dpo(tmp_path, pairs, model_cfg=setup.cfg, mesh=setup.mesh, init_params=params,
                       dpo=DPOConfig(loss_type=loss_type, beta=0.5, batch_size=8, seq_len=SEQ,
                                     loop=LoopConfig(steps=10, log_every=1, eval_every=50,
                                                     checkpoint_every=100)),
                       optim=OptimConfig(lr=3e-3, warmup_steps=0), progress=False, tokenizer=setup.tok)
    losses = _losses(result)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert gap(lp(result.state.params)) > before + 0.5


def test_genrm_lowers_its_loss_and_scores_are_probabilities(setup, tmp_path):
    exp = load_experiment(GENRM)
    verify = [verification_record(e.prompt, str(int(e.answer) + (i % 2)), i % 2 == 0)
              for i, e in enumerate(setup.examples)]
    correct = [{"prompt": e.prompt, "response": e.answer} for e in setup.examples]
    source = exp.GenRMSource(verify, correct, lam=0.5, batch_size=8, seq_len=SEQ + 16, seed=0,
                             tokenizer=setup.tok)
    result = fit(tmp_path, name="genrm", loop=LoopConfig(steps=16, log_every=1), mesh=setup.mesh,
                 optim=OptimConfig(lr=3e-3, warmup_steps=0), init_params=setup.warm.state.params,
                 param_axes=transformer.param_axes, source=source, progress=False,
                 loss_sums_fn=lambda p, b, k: exp.genrm_loss_sums(p, b, k, model_cfg=setup.cfg))
    losses = _losses(result)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    problems = [e.prompt for e in setup.examples[:8]]
    solutions = [str(int(e.answer) + (i % 2)) for i, e in enumerate(setup.examples[:8])]
    rows = exp.scoring_rows(problems, solutions, SEQ + 16, setup.tok)
    scores = np.asarray(exp.genrm_scores(result.state.params, rows, setup.cfg, *verdict_ids(setup.tok)))
    assert scores.shape == (8,) and np.all((scores > 0) & (scores < 1))


RL_ARMS = {
    "grpo": RLConfig(prompts_per_step=8, group_size=4, ppo_epochs=2, max_new_tokens=4,
                     loop=LoopConfig(steps=2, log_every=1, eval_every=100, checkpoint_every=2)),
    "dapo": RLConfig(prompts_per_step=8, group_size=4, ppo_epochs=2, max_new_tokens=4,
                     eps_high=0.28, dynamic_sampling=True, aggregation="token-mean",
                     overlong="soft", overlong_buffer=2,
                     loop=LoopConfig(steps=2, log_every=1, eval_every=100, checkpoint_every=2)),
    "reflect": RLConfig(prompts_per_step=8, group_size=4, ppo_epochs=2, max_new_tokens=4,
                        reflect_max_tokens=6, mode="reflect", format_coef=1.0,
                        loop=LoopConfig(steps=2, log_every=1, eval_every=100, checkpoint_every=2)),
}


@pytest.mark.parametrize("arm", list(RL_ARMS))
def test_rl_updates_raise_the_completions_with_positive_advantage(setup, tmp_path, arm):
    """The trainer's two updates on its first rollout batch move log pi of each completion in
    the direction of its advantage: sum_b A_b * mean_t (log pi_new - log pi_old) > 0."""
    rl = RL_ARMS[arm]
    params = setup.warm.state.params
    batch, metrics = RolloutSource(setup.examples, model_cfg=setup.cfg, rl=rl,
                                   tokenizer=setup.tok).sample_batch(params, 0)
    assert np.any(batch["advantages"] != 0), "no informative group: the check would be empty"
    result = train_rl(tmp_path, setup.examples, model_cfg=setup.cfg, rl=rl, mesh=setup.mesh,
                      init_params=params, progress=False, tokenizer=setup.tok,
                      optim=OptimConfig(lr=1e-3, warmup_steps=0, weight_decay=0.0))
    assert math.isfinite(result.records[0]["train/reward"])
    assert result.records[0]["train/reward"] == pytest.approx(metrics["reward"])  # the same rollout
    sample = rl.sample_config(setup.tok)
    before = np.asarray(policy_logprobs(params, batch, setup.cfg, sample)[0])
    after = np.asarray(policy_logprobs(result.state.params, batch, setup.cfg, sample)[0])
    per_row = ((after - before) * batch["mask"]).sum(1) / np.maximum(batch["mask"].sum(1), 1)
    assert float(np.sum(batch["advantages"] * per_row)) > 0
