"""The time budget (``loop.max_seconds``): the horizon and stopping rules, the host-set learning
rate, and a budgeted ``fit`` on a fake clock (stops before its cap with its last step saved
and evaluated, decays to the final rate by then, and a rerun finds nothing left to do)."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.train import budget
from jaxlab.train import sharding as shd
from jaxlab.train.fit import LoopConfig, fit
from jaxlab.train.optim import OptimConfig, make_optimizer, make_schedule


def test_horizon_is_the_cap_until_a_step_is_timed_then_what_the_time_left_allows():
    assert budget.horizon(2, spent_s=5.0, step_s=None, max_seconds=60.0, cap=1000) == 1000
    # 40 s left at 0.5 s a step: 80 more steps after the 9 done.
    assert budget.horizon(10, spent_s=20.0, step_s=0.5, max_seconds=60.0, cap=1000) == 89
    assert budget.horizon(10, spent_s=20.0, step_s=0.5, max_seconds=60.0, cap=50) == 50
    assert budget.horizon(10, spent_s=70.0, step_s=0.5, max_seconds=60.0, cap=1000) == 10


def test_a_step_is_last_at_the_cap_or_when_the_next_would_overrun():
    kw = dict(max_seconds=10.0, cap=100)
    assert not budget.is_last(5, spent_s=8.9, step_s=0.5, **kw)
    assert budget.is_last(5, spent_s=9.1, step_s=0.5, **kw)
    assert budget.is_last(100, spent_s=0.0, step_s=None, **kw)
    assert budget.is_last(3, spent_s=10.0, step_s=None, **kw)
    assert not budget.is_last(3, spent_s=9.0, step_s=None, **kw)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
@pytest.mark.parametrize("total,warmup", [(50, 10), (5, 10), (1, 0), (30, 0)])
def test_the_host_side_rate_is_the_schedule(schedule, total, warmup):
    cfg = OptimConfig(lr=3e-3, schedule=schedule, warmup_steps=warmup, final_lr_fraction=0.1)
    want = make_schedule(cfg, total)
    for step in range(total + 3):
        assert budget.lr_at(cfg, total, step) == pytest.approx(float(want(step)), rel=1e-5, abs=1e-12)


def test_the_host_set_rate_gives_the_same_step_as_the_schedule():
    cfg = OptimConfig(lr=0.1, warmup_steps=0, clip_norm=1.0)
    params = {"kernel": jnp.arange(4.0), "scale": jnp.ones(3)}
    grads = {"kernel": jnp.array([0.3, -0.2, 0.1, 0.5]), "scale": jnp.array([1.0, -1.0, 0.5])}
    plain, hosted = make_optimizer(cfg, 10), make_optimizer(cfg, 10, host_lr=True)
    s_plain, s_host = plain.init(params), hosted.init(params)
    for step in range(3):
        s_host = budget.set_learning_rate(s_host, float(make_schedule(cfg, 10)(step)))
        u_plain, s_plain = plain.update(grads, s_plain, params)
        u_host, s_host = hosted.update(grads, s_host, params)
        np.testing.assert_allclose(u_host["kernel"], u_plain["kernel"], rtol=1e-6)
    zero = budget.set_learning_rate(s_host, 0.0)
    u_zero, _ = hosted.update(grads, zero, params)
    assert float(jnp.abs(u_zero["kernel"]).max()) == 0.0


class _Rows:
    uses_params = False

    def __init__(self):
        self.i = 0

    def next(self, params, step):
        rng = np.random.default_rng(self.i)
        self.i += 1
        x = rng.normal(size=(8, 4)).astype(np.float32)
        return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)}, {}

    def get_state(self):
        return {"i": self.i}

    def set_state(self, state):
        self.i = state["i"]


def _loss(params, batch, key):
    err = batch["x"] @ params["kernel"] - batch["y"]
    return {"loss": jnp.sum(err ** 2), "count": jnp.asarray(err.shape[0], jnp.float32)}


def _fit(workdir, evals):
    return fit(workdir, name="budget", loop=LoopConfig(steps=500, log_every=1, eval_every=1000,
                                                       checkpoint_every=1000, max_seconds=40.0),
               optim=OptimConfig(lr=0.05, warmup_steps=4, final_lr_fraction=0.1), progress=False,
               mesh=shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1]),
               init_params=lambda key: {"kernel": jnp.zeros(4)}, param_axes=lambda path: ("embed",),
               loss_sums_fn=_loss, source=_Rows(),
               evaluate=lambda params, step: evals.append(step) or {"loss": 0.0})


def test_a_budgeted_fit_stops_in_time_with_its_schedule_decayed_and_a_rerun_does_nothing(tmp_path, monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(budget, "_now", lambda: float(next(ticks)))  # every reading of the clock: 1 s
    evals = []
    result = _fit(tmp_path, evals)
    done = int(result.state.step)
    assert 5 < done < 500  # stopped by the budget, not the cap
    assert evals == [done]  # the last step was evaluated (eval_every is larger than the run)
    table = json.loads((tmp_path / budget.BUDGET_FILE).read_text())
    assert table["finished"] == done and table["spent"][str(done)] <= 40.0
    lrs = [r["train/lr"] for r in result.records if "train/lr" in r]
    assert len(lrs) == done
    assert lrs[:4] == pytest.approx([0.0, 0.0125, 0.025, 0.0375])  # warm-up, in steps
    assert max(lrs) == pytest.approx(0.05, rel=0.05)
    assert lrs[-1] <= 0.05 * 0.1 * 1.5  # decayed to (near) the final rate when time ran out
    assert all(b <= a + 1e-9 for a, b in zip(lrs[5:], lrs[6:]))  # decays monotonically
    again = _fit(tmp_path, evals)
    assert int(again.state.step) == done and again.resumed_from == done and again.train_wall_s is None


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="loop.max_seconds must be > 0"):
        LoopConfig(max_seconds=0.0)
