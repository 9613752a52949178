"""EVA: LoRA initialised from the fine-tuning data's activations, with ranks re-allocated by
explained variance (Paischer et al., "One Initialization to Rule them All: Fine-tuning via
Explained Variance Adaptation").

For every targeted matrix (module m, layer l) with input activations X [N, n] (the rows of
every non-padding token; the input of q/k/v is the attention-normed residual, of gate/up the
MLP-normed residual, of down the MLP hidden ``mlp_hidden``):

1. Incremental SVD, batch by batch, keeping the top k = ceil(rho r) right singular vectors:

       M = [diag(S) V ; X_new]    [(k + N), n],     M = U' S' V'^T,     S, V <- S'[:k], V'[:k]

   (uncentered: M^T M = V S^2 V^T + X_new^T X_new, so the update is exact while the data's
   rank is at most k). A matrix stops updating once its components are stable: the cosine
   similarity |<v_j, v'_j>| of every kept component between successive batches is >= tau.
   EVA stops when every matrix has stopped (or the batches run out).
2. Explained-variance ratio of component j: xi_j = S_j^2 / sum of ||X||_F^2 over the rows seen.
3. Rank budget r x (number of targeted matrices): the components with the largest xi over all
   matrices win, each matrix taking at most k; matrix (m, l) gets r_ml = its number of winners.
4. A = V[:r_ml]^T [n, r_ml] (orthonormal columns), B = 0 [r_ml, m]: the model is unchanged at
   step 0; training, merge and export are LoRA's, with s = alpha / r (the nominal r).

Stacked layers share one array per module, so A and B have r_max = max_l r_ml columns (rows)
and layer l's columns past r_ml are zero. A zero column of A meets a zero row of B: the
gradient of each is the other times something, so both stay exactly zero under training
(Adam's update of a zero gradient is 0 / (0 + eps) = 0): layer l trains rank r_ml.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from tqdm.auto import tqdm

from jaxlab.models import transformer
from jaxlab.nn.norms import norm
from jaxlab.peft.adapters import AdapterError, AdapterSpec, _layout, targeted

# The transformer activation each kernel reads (module path -> where its input comes from).
EVA_INPUTS = {"layers/attn/q": "attn_in", "layers/attn/k": "attn_in", "layers/attn/v": "attn_in",
              "layers/mlp/gate": "mlp_in", "layers/mlp/up": "mlp_in", "layers/mlp/down": "mlp_hidden"}


@dataclasses.dataclass
class SVDState:
    """The running top-k SVD of one stack of matrices [L]: singular values ``s`` [L, k], right
    singular vectors ``v`` [L, k, n] (rows), ``total`` [L] (sum of squares of the rows seen),
    ``done`` [L] (components stable: no more updates), ``batches`` [L] (batches used)."""
    s: np.ndarray
    v: np.ndarray
    total: np.ndarray
    done: np.ndarray
    batches: np.ndarray

    @classmethod
    def empty(cls, n_layers: int, k: int, n: int) -> "SVDState":
        return cls(s=np.zeros((n_layers, 0)), v=np.zeros((n_layers, 0, n)), total=np.zeros(n_layers),
                   done=np.zeros(n_layers, bool), batches=np.zeros(n_layers, int))


def component_similarity(v_old_LKn: np.ndarray, v_new_LKn: np.ndarray) -> np.ndarray:
    """|cos| between matching components [L, K] (the vectors are unit-norm; sign-free)."""
    return np.abs(np.einsum("lkn,lkn->lk", v_old_LKn, v_new_LKn))


def svd_update(state: SVDState, x_LNn: np.ndarray, k: int, threshold: float) -> SVDState:
    """One incremental-SVD step (module docstring, step 1) for the layers not yet done."""
    x = np.asarray(x_LNn, np.float64)
    stacked = np.concatenate([state.s[..., None] * state.v, x], axis=1)  # [L, k' + N, n]
    _, s_new, vt_new = np.linalg.svd(stacked, full_matrices=False)
    k_eff = min(k, s_new.shape[-1])
    s_new, v_new = s_new[:, :k_eff], vt_new[:, :k_eff]
    keep = state.done
    k_old = state.v.shape[1]
    if k_old == k_eff and k_old > 0:
        stable = component_similarity(state.v, v_new).min(axis=1) >= threshold
    else:  # the first batch (or fewer rows so far than k): nothing to compare with yet
        stable = np.zeros(len(x), bool)
        pad = ((0, 0), (0, k_eff - k_old))
        state = dataclasses.replace(state, s=np.pad(state.s, pad), v=np.pad(state.v, pad + ((0, 0),)))
    return SVDState(
        s=np.where(keep[:, None], state.s, s_new),
        v=np.where(keep[:, None, None], state.v, v_new),
        total=np.where(keep, state.total, state.total + np.sum(x * x, axis=(1, 2))),
        done=keep | stable,
        batches=state.batches + ~keep)


def explained_variance_ratio(state: SVDState) -> np.ndarray:
    """xi [L, k] = S^2 / total (module docstring, step 2)."""
    return state.s ** 2 / np.maximum(state.total, 1e-30)[:, None]


def allocate_ranks(ratios: Mapping[object, np.ndarray], budget: int, cap: int) -> dict[object, int]:
    """{matrix: rank}: the ``budget`` components with the largest explained-variance ratios
    over all matrices (each matrix's ratios in descending order), at most ``cap`` per matrix
    (module docstring, step 3). Ties go to the earlier matrix and component."""
    if budget < 0 or cap < 0:
        raise AdapterError(f"budget and cap must be >= 0, got {budget}, {cap}")
    keys = list(ratios)
    entries = [(-float(xi), i, j) for i, key in enumerate(keys) for j, xi in enumerate(np.asarray(ratios[key])[:cap])]
    entries.sort()
    ranks = {key: 0 for key in keys}
    for _, i, _ in entries[:budget]:
        ranks[keys[i]] += 1
    return ranks


def layer_inputs(params: dict, batch: Mapping, model_cfg: transformer.Config) -> dict[str, jax.Array]:
    """{"attn_in", "mlp_in", "mlp_hidden"}: each layer's kernel inputs [L, B, T, width] on a
    packed batch (module docstring); the norms are recomputed from the captured residuals."""
    _, seen = transformer.apply(params, batch["inputs"], model_cfg, positions_BT=batch["positions"],
                                segment_ids_BT=batch["segment_ids"], capture=("resid", "attn_out", "mlp_hidden"))
    layers = params["layers"]
    normed = jax.vmap(lambda p, x: norm(p, x, model_cfg.norm_type, model_cfg.norm_eps))
    return {"attn_in": normed(layers["attn_norm"], seen["resid"]),
            "mlp_in": normed(layers["mlp_norm"], seen["resid"] + seen["attn_out"]),
            "mlp_hidden": seen["mlp_hidden"]}


jit_layer_inputs = jax.jit(layer_inputs, static_argnums=2)


def eva_components(params: dict, spec: AdapterSpec, batches: Iterable[Mapping], model_cfg: transformer.Config,
                   *, max_batches: int = 64, progress: bool = True) -> dict[str, SVDState]:
    """{module path: SVDState} of every targeted kernel, from ``batches`` (packed batches with
    ``inputs``, ``positions``, ``segment_ids``) until every matrix is stable or ``max_batches``
    batches have been read (module docstring, step 1)."""
    modules = sorted(targeted(params, spec))
    unsupported = [m for m in modules if m not in EVA_INPUTS]
    if unsupported:
        raise AdapterError(f"EVA reads the inputs of {sorted(EVA_INPUTS)}; targets={spec.targets!r} "
                           f"also selects {unsupported} (the attention context o reads is not captured): "
                           "use targets 'qv', 'mlp' or r'^layers/(attn/(q|k|v)|mlp/(gate|up|down))$'")
    k = math.ceil(spec.rho * spec.rank)
    states = {m: SVDState.empty(model_cfg.n_layers, k, _layout(m, targeted(params, spec)[m])[1]) for m in modules}
    bar = tqdm(total=max_batches, desc="eva", unit="batch", disable=not progress, dynamic_ncols=True)
    try:
        for step, batch in enumerate(batches):
            if step >= max_batches:
                break
            keep = np.asarray(batch["segment_ids"]).reshape(-1) > 0
            acts = jax.device_get(jit_layer_inputs(params, {key: batch[key] for key in
                                                             ("inputs", "positions", "segment_ids")}, model_cfg))
            for m in modules:
                if states[m].done.all():
                    continue
                x = np.asarray(acts[EVA_INPUTS[m]], np.float64)
                x = x.reshape(x.shape[0], -1, x.shape[-1])[:, keep]
                states[m] = svd_update(states[m], x, k, spec.eva_threshold)
            bar.update(1)
            if all(s.done.all() for s in states.values()):
                break
    finally:
        bar.close()
    if not any(s.batches.any() for s in states.values()):
        raise AdapterError("EVA read no batch: give it at least one batch of fine-tuning data")
    return states


def eva_init(params: dict, spec: AdapterSpec, batches: Iterable[Mapping], model_cfg: transformer.Config,
             *, max_batches: int = 64, progress: bool = True) -> tuple[dict, dict[str, list[int]]]:
    """(trainable, ranks): EVA's LoRA leaves (``lora_a`` from the top right singular vectors,
    ``lora_b`` = 0; module docstring) and each module's rank per layer. Modules that get no
    rank in any layer are left out."""
    if spec.method != "eva":
        raise AdapterError(f"eva_init needs method 'eva', got {spec.method!r}")
    states = eva_components(params, spec, batches, model_cfg, max_batches=max_batches, progress=progress)
    ratios = {(m, l): explained_variance_ratio(s)[l] for m, s in states.items() for l in range(len(s.s))}
    cap = math.ceil(spec.rho * spec.rank)
    alloc = allocate_ranks(ratios, budget=spec.rank * len(ratios), cap=cap)
    kernels = targeted(params, spec)
    trainable, ranks = {}, {}
    for m, state in states.items():
        per_layer = [alloc[(m, l)] for l in range(len(state.s))]
        r_max = max(per_layer)
        if r_max == 0:
            continue
        lead, n, out = _layout(m, kernels[m])
        a = np.zeros((*lead, n, r_max), np.float32)
        for l, r in enumerate(per_layer):
            a[l, :, :r] = state.v[l, :r].T
        trainable[f"{m}/lora_a"] = jnp.asarray(a)
        trainable[f"{m}/lora_b"] = jnp.zeros((*lead, r_max, out), jnp.float32)
        ranks[m] = per_layer
    return traverse_util.unflatten_dict(trainable, sep="/"), ranks
