"""A tiny end-to-end run of experiments/reflect_retry_reward.py (a few steps)."""

import sys
from pathlib import Path

from jaxlab.cli import load_experiment

sys.path.insert(0, str(Path(__file__).parent))
from rl_tiny import TINY_TASK, rl_tiny, tiny  # noqa: E402


def test_reflect_retry_reward_tiny(tmp_path):
    exp = load_experiment("experiments/reflect_retry_reward.py")
    cfg = exp.get_config()
    cfg = tiny(cfg, rl=rl_tiny(cfg.rl, reflect_max_tokens=6))
    out = exp.run(cfg, tmp_path, progress=False)
    # second try counts the first-try successes too
    assert out["second_before"] >= out["first_before"] and out["second_after"] >= out["first_after"]
    held, _ = exp.check({"x": out})
    assert held == (out["first_after"] > out["first_before"] and out["second_after"] > out["second_before"])


def test_reflect_records_have_a_wrong_first_answer():
    exp = load_experiment("experiments/reflect_retry_reward.py")
    examples = TINY_TASK.splits()["train"][:10]
    records = exp.reflect_records(examples, 0.5)
    assert len(records) == 15
    for ex, rec in zip(examples[:5], records[10:]):
        wrong = rec["prompt"][len(ex.prompt):-len("\nWrong. Reflect:")]
        assert wrong != ex.answer and rec["response"].endswith("Retry:" + ex.answer)
