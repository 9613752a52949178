"""Rollouts and evaluation split across two CPU processes (2 devices each) equal one process
sampling everything on 4 devices with the same keys, bit for bit."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxlab import tasks as tasks_lib
from jaxlab.data.tokenizer import BYTES
from jaxlab.evals import evaluate_task
from jaxlab.models import transformer
from jaxlab.rl import RLConfig
from jaxlab.rl.loop import RolloutSource
from jaxlab.train import sharding as shd
from jaxlab.train.fit import LoopConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sharded_rollout.py"
CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                         head_dim=16, mlp_dim=64)
# dynamic sampling: the kept groups depend on every process's rewards
RL = RLConfig(prompts_per_step=4, group_size=4, max_new_tokens=6, pass_k=2, temperature=1.5,
              dynamic_sampling=True, max_sample_rounds=2, loop=LoopConfig(steps=1, seed=3))
TASK = tasks_lib.get("arithmetic", train_difficulty=(1, 1), ops="+")


def _params():
    return transformer.init(CFG, jax.random.key(0))


def rollout(mesh) -> tuple[dict, dict]:
    """(this process's rows, metrics) of the first rollout batch on ``mesh``."""
    params = jax.tree.map(lambda x: shd.replicate(np.asarray(x), mesh), _params())
    source = RolloutSource(TASK.splits(0, 12, 0, 0)["train"], model_cfg=CFG, rl=RL, mesh=mesh)
    batch, metrics = source.next(params, 1)
    return batch, {k: v for k, v in metrics.items() if not k.startswith("time_")}


def evaluation(across_processes: bool) -> list[dict]:
    """The per-problem records of a small evaluation (greedy + 2 samples, batches of 4)."""
    result = evaluate_task(CFG, _params(), BYTES, TASK, n=7, samples=2, key=jax.random.key(5),
                           max_new_tokens=6, batch_size=4, chat=False, progress=False,
                           across_processes=across_processes)
    return result["problems"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_sample_and_evaluate_like_one(tmp_path):
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": os.environ["XLA_FLAGS"].replace("device_count=8", "device_count=2")}
    procs = [subprocess.Popen([sys.executable, str(FIXTURE), str(port), str(i), "2", str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outputs)

    mesh = shd.make_mesh(shd.MeshConfig(data=-1), jax.devices()[:4])
    batch, metrics = rollout(mesh)  # one process: every row
    parts = [dict(np.load(tmp_path / f"rows{i}.npz")) for i in range(2)]
    assert all(len(p["inputs"]) == RL.rows // 2 for p in parts)
    for k, v in batch.items():
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), v, err_msg=k)
    assert metrics["groups_sampled"] > 0 and metrics["response_length"] > 0
    for i in range(2):  # the gathered rewards give every process the one process's metrics
        assert json.loads((tmp_path / f"metrics{i}.json").read_text()) == metrics

    one = evaluation(across_processes=False)
    assert len(one) == 7 and {len(r["samples"]) for r in one} == {2}
    for i in range(2):
        assert json.loads((tmp_path / f"eval{i}.json").read_text()) == json.loads(json.dumps(one))


def test_sharded_sampling_equals_one_device():
    """The rows sharded over 4 devices are what one device samples with the same key."""
    batch4, metrics4 = rollout(shd.make_mesh(shd.MeshConfig(data=-1), jax.devices()[:4]))
    batch1, metrics1 = rollout(shd.make_mesh(shd.MeshConfig(data=-1), jax.devices()[:1]))
    for k in batch1:
        np.testing.assert_array_equal(batch4[k], batch1[k], err_msg=k)
    assert metrics4 == metrics1


def test_eval_cli_refuses_an_incomplete_process_group(capsys):
    from jaxlab.evals.cli import eval_main

    assert eval_main(["tiny", "--task", "arithmetic", "--num-processes", "2"]) == 2
    assert "--num-processes / --process-id need --coordinator" in capsys.readouterr().err
