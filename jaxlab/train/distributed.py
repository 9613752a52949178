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


def process_share(n: int) -> slice:
    """This process's contiguous share of ``n`` rows: ``[p * n / P, (p + 1) * n / P)`` for
    process p of P (the layout ``jax.make_array_from_process_local_data`` gives a batch sharded
    over a mesh built from ``jax.devices()``). ``n`` must divide by P."""
    count, index = jax.process_count(), jax.process_index()
    if n % count:
        raise ValueError(f"{n} rows do not divide among {count} processes")
    per = n // count
    return slice(index * per, (index + 1) * per)


def allgather_rows(rows: np.ndarray) -> np.ndarray:
    """The processes' ``rows`` (each process's share, any number of rows of the same trailing
    shape and dtype) concatenated in process order; exact for every dtype JSON carries (ints,
    bools, float32 and float64 values)."""
    rows = np.asarray(rows)
    if jax.process_count() == 1:
        return rows
    parts = allgather_json(rows.tolist())
    return np.concatenate([np.asarray(p, rows.dtype).reshape((-1, *rows.shape[1:])) for p in parts])


def add_arguments(parser) -> None:
    """The multi-process options of a command (``jaxlab run``, ``jaxlab eval``)."""
    group = parser.add_argument_group(
        "multi-process", "run one process per host (or per GPU); every process runs the same command")
    group.add_argument("--distributed", action="store_true",
                       help="join a multi-process run, detecting the cluster (TPU pod, Slurm, Open MPI) "
                            "unless --coordinator is given")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help=f"address of process 0 (implies --distributed; or ${COORDINATOR_ENV})")
    group.add_argument("--num-processes", type=int, help=f"number of processes (${NUM_PROCESSES_ENV})")
    group.add_argument("--process-id", type=int, help=f"this process's index (${PROCESS_ID_ENV})")


def initialize_from_args(args) -> bool:
    """Joins a multi-process run when :func:`add_arguments`' options (or their environment
    variables) ask for one; returns whether it did. Raises ValueError on an incomplete set."""
    import os

    coordinator = args.coordinator or os.environ.get(COORDINATOR_ENV)
    num = args.num_processes if args.num_processes is not None else os.environ.get(NUM_PROCESSES_ENV)
    pid = args.process_id if args.process_id is not None else os.environ.get(PROCESS_ID_ENV)
    if not (args.distributed or coordinator):
        if num is not None or pid is not None:
            raise ValueError("--num-processes / --process-id need --coordinator (or --distributed)")
        return False
    initialize(coordinator, None if num is None else int(num), None if pid is None else int(pid))
    return True
