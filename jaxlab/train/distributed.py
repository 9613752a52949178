"""Multi-process runs: start-up with ``jax.distributed`` and the few host-side agreements a
run needs between processes (a barrier, gathering small JSON values).

Every process runs the same command. Each reads its own shard of the data and passes its
slice of the batch to ``jax.make_array_from_process_local_data``; jit-compiled steps then
compute over the global arrays, so the training math is the single-process math.
"""

from __future__ import annotations

import json

import jax
import numpy as np

COORDINATOR_ENV = "JAXLAB_COORDINATOR"
NUM_PROCESSES_ENV = "JAXLAB_NUM_PROCESSES"
PROCESS_ID_ENV = "JAXLAB_PROCESS_ID"


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Joins the processes of a run; call before any JAX computation.

    With all three arguments (a CPU test, a GPU cluster without a scheduler) the processes find
    each other at ``coordinator`` (host:port of process 0). Without arguments JAX detects the
    cluster (Cloud TPU pods, Slurm, Open MPI). CPU processes talk through gloo.
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError("give the coordinator address, the number of processes and this "
                         "process's id together (or none of them to auto-detect a cluster)")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is not in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (no-op in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def allgather_json(value) -> list:
    """[value of process 0, value of process 1, ...] for a JSON-serialisable ``value``."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([data.size], np.int64))
    padded = np.zeros(int(np.max(sizes)), np.uint8)
    padded[:data.size] = data
    gathered = multihost_utils.process_allgather(padded)
    return [json.loads(bytes(gathered[i, :int(sizes[i, 0])]).decode())
            for i in range(jax.process_count())]


def agree_max(n: int) -> int:
    """The largest of the processes' values of ``n``."""
    return max(allgather_json(int(n)))
