"""The Byte Latent Transformer (Pagnoni et al. 2024, "Byte Latent Transformer: Patches Scale
Better Than Tokens") as pure functions on a params pytree: a byte LM with no tokenizer, whose
large transformer runs over variable-length patches of bytes.

Shapes: B rows, T bytes, P patch slots (``max_patches``, default T), D latent width, d local
width, V vocabulary (bytes and the byte tokenizer's special ids).

    starts_BT  = patching rule (below);  p(t) = patch index of byte t = cumsum(starts) - 1
    e_t        = (E[x_t] + sum_n E_n[hash_n(t)]) / (1 + #n)          byte + hashed n-gram embeddings
    h_BTd      = local encoder layers (causal, window ``local_window``) over e
    q_p        = mean_{t: p(t) = p} h_t                              pooled patch query
    z_p        = W_up (q_p + crossattn(q_p -> {h_t : p(t) = p}))     each patch reads its own bytes
    u_p        = z_{p-1} if patch p-1 is in p's sequence else s      (s learned: a sequence's start)
    o_PD       = latent transformer (causal over patches) on u
    c_p        = W_down o_p  reshaped to ``decoder_kv_per_patch`` vectors of width d
    g_t        = h_t + crossattn(h_t -> {c_p : p = p(t)})            byte t reads its patch's slot
    logits_t   = W_head norm(local decoder layers (causal, window) over g)_t

Hashed n-grams: for n in ``ngram_sizes`` (3..8), with x'_s = x_s + 1 for a byte of the same
sequence (position_t - i >= 0) and 0 before the sequence's start,

    hash_n(t) = (sum_{i=0}^{n-1} x'_{t-i} a^i  mod 2^32)  mod M,   a = 16777619 (FNV prime),
    M = ``ngram_table_size``; one table E_n [M, d] per n.

No future information reaches logits_t (which predict x_{t+1}): the decoder's byte t reads slot
p(t) of the latent transformer, whose input u_p is z_{p-1}, so slot p has seen the patches
strictly before byte t's patch, made of bytes < start of p(t) <= t (the rule of the paper's
decoder: bytes of a patch read the latent state of the patches before it, and the latent
transformer's output for a patch is used to predict the next patch's bytes). The local layers
are causal; patch boundaries up to byte t depend on x_<=t (:mod:`jaxlab.models.patching`).
Both cross-attentions are patch-local masks given to :func:`jaxlab.kernels.attention.attention`
as (query, key) segment ids: query patch p against bytes with p(t) = p in the encoder, byte t
against the slots of patch p(t) in the decoder.

Patching (``patching``):
  "space"    (default) a patch starts at the first letter/digit after a space-like byte
             (:func:`jaxlab.models.patching.patch_starts_space`); needs no entropy model, so
             the family trains through the runner as it is.
  "static"   every ``patch_size`` bytes of a sequence.
  "entropy"  the entropy of a small byte LM (a :mod:`jaxlab.models.transformer` under
             ``params["entropy"]``, its config ``cfg.entropy_model``) with the global rule
             (H(x_t) > ``entropy_threshold``) or the monotonic rule (``entropy_rule``). The
             entropy model is frozen inside the BLT: it passes through ``stop_gradient`` (no
             gradient reaches it) and :func:`jaxlab.train.optim.weight_decay_mask` leaves
             it alone. Train it first as a byte transformer and put its params in
             ``params["entropy"]`` (:func:`with_entropy_model`); the runner does both
             (``entropy_from``: a byte-transformer run to load; else it pre-trains one for
             ``entropy_steps`` steps in WORKDIR/entropy_model).
A new patch also starts wherever the segment id changes (packed sequences never share a
patch), and every ``max_patch_len`` bytes when set. With ``max_patches`` < T, bytes past the
last slot join the last patch (causality is kept: slot P-1 reads patches before it only).

Generation recomputes: the "cache" of :func:`init_cache` holds the bytes so far, and
:func:`prefill` / :func:`decode_step` rerun :func:`apply` on the whole buffer (slow, correct;
the same interface as the other families, so :func:`jaxlab.samplers.generate` serves BLT).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp

from jaxlab.kernels.attention import attention
from jaxlab.models import patching, transformer
from jaxlab.nn.linear import dense, init_dense
from jaxlab.nn.norms import init_norm, rms_norm

HASH_BASE = 16777619  # the 32-bit FNV prime


@dataclasses.dataclass(frozen=True)
class Config:
    """BLT hyper-parameters. ``d_model``, ``n_layers``, ``n_heads``, ``head_dim``, ``mlp_dim``
    are the latent transformer's (they carry over when ``--set model.family=blt`` switches a
    transformer config); the ``local_*`` fields size the byte-level encoder and decoder."""

    vocab_size: int = 264
    d_model: int = 128           # latent width D
    n_layers: int = 2            # latent transformer layers
    n_heads: int = 2
    head_dim: int = 64
    mlp_dim: int = 384
    d_local: int = 64            # local encoder / decoder width d
    local_heads: int = 2
    local_mlp_dim: int = 192
    encoder_layers: int = 1
    decoder_layers: int = 1
    local_window: int = 64       # bytes each local self-attention query sees (itself included)
    ngram_sizes: tuple[int, ...] = (3, 4, 5, 6, 7, 8)  # () for byte embeddings alone
    ngram_table_size: int = 4096
    decoder_kv_per_patch: int = 2  # key/value vectors each patch gives the decoder's bytes
    patching: Literal["space", "static", "entropy"] = "space"
    patch_size: int = 4          # "static"
    entropy_rule: Literal["global", "monotonic"] = "global"
    entropy_threshold: float = 2.0  # nats: theta (global) or theta_r (monotonic)
    max_patch_len: int = 0       # 0: no maximum
    max_patches: int = 0         # patch slots P; 0: one per byte (P = T, never short)
    entropy_d_model: int = 32    # the entropy model (a byte transformer), "entropy" only
    entropy_layers: int = 1
    entropy_heads: int = 2
    entropy_steps: int = 500     # the runner pre-trains the entropy model this long ("entropy", no entropy_from)
    entropy_from: str = ""       # or loads it from this byte-transformer run folder
    norm_eps: float = 1e-6
    rope_base: float = 10000.0
    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    attention_impl: str = "auto"
    family: Literal["blt"] = "blt"

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "head_dim", "mlp_dim", "d_local",
                     "local_heads", "local_mlp_dim", "encoder_layers", "decoder_layers", "local_window",
                     "ngram_table_size", "decoder_kv_per_patch", "patch_size", "entropy_d_model",
                     "entropy_layers", "entropy_heads", "entropy_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_patch_len", "max_patches"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name} must be >= 0 (0: none), got {getattr(self, name)}")
        if self.d_local % self.local_heads:
            raise ValueError(f"model.d_local ({self.d_local}) must be a multiple of model.local_heads "
                             f"({self.local_heads})")
        if self.entropy_d_model % self.entropy_heads:
            raise ValueError(f"model.entropy_d_model ({self.entropy_d_model}) must be a multiple of "
                             f"model.entropy_heads ({self.entropy_heads})")
        if any(n < 1 for n in self.ngram_sizes) or len(set(self.ngram_sizes)) != len(self.ngram_sizes):
            raise ValueError(f"model.ngram_sizes must be distinct sizes >= 1, got {self.ngram_sizes}")
        if self.patching not in ("space", "static", "entropy"):
            raise ValueError(f"model.patching must be 'space', 'static' or 'entropy', got {self.patching!r}")
        if self.entropy_rule not in ("global", "monotonic"):
            raise ValueError(f"model.entropy_rule must be 'global' or 'monotonic', got {self.entropy_rule!r}")

    def _transformer(self, **kw) -> transformer.Config:
        return transformer.Config(vocab_size=self.vocab_size, norm_eps=self.norm_eps, rope_base=self.rope_base,
                                  param_dtype=self.param_dtype, compute_dtype=self.compute_dtype,
                                  attention_impl=self.attention_impl, **kw)

    @property
    def encoder(self) -> transformer.Config:
        """The local encoder's blocks (windowed causal self-attention over bytes)."""
        return self._transformer(d_model=self.d_local, n_layers=self.encoder_layers, n_heads=self.local_heads,
                                 n_kv_heads=self.local_heads, head_dim=self.d_local // self.local_heads,
                                 mlp_dim=self.local_mlp_dim, window=self.local_window)

    @property
    def decoder(self) -> transformer.Config:
        return dataclasses.replace(self.encoder, n_layers=self.decoder_layers)

    @property
    def latent(self) -> transformer.Config:
        """The latent transformer's blocks (causal over patches)."""
        return self._transformer(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                                 n_kv_heads=self.n_heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim)

    @property
    def entropy_model(self) -> transformer.Config:
        """The byte LM whose next-byte entropies place patches ("entropy" patching)."""
        return self._transformer(d_model=self.entropy_d_model, n_layers=self.entropy_layers,
                                 n_heads=self.entropy_heads, n_kv_heads=self.entropy_heads,
                                 head_dim=self.entropy_d_model // self.entropy_heads,
                                 mlp_dim=4 * self.entropy_d_model)

    @property
    def dtype(self):
        return jnp.dtype(self.compute_dtype)


def _init_cross(key: jax.Array, d_q: int, d_kv: int, heads: int, dtype) -> dict:
    kq, kk, kv, ko = jax.random.split(key, 4)
    dh = d_q // heads
    return {"q_norm": init_norm(d_q, "rms", dtype), "kv_norm": init_norm(d_kv, "rms", dtype),
            "q": init_dense(kq, (d_q,), (heads, dh), dtype=dtype),
            "k": init_dense(kk, (d_kv,), (heads, dh), dtype=dtype),
            "v": init_dense(kv, (d_kv,), (heads, dh), dtype=dtype),
            "o": init_dense(ko, (heads, dh), (d_q,), dtype=dtype)}


@functools.partial(jax.jit, static_argnums=0)
def init(cfg: Config, key: jax.Array) -> dict:
    """Params pytree: ``byte_embed``, ``ngram_embed`` [#n, M, d], ``encoder`` / ``decoder`` /
    ``latent`` (transformer blocks stacked on [L]), ``patch_cross`` / ``byte_cross``
    (cross-attentions), ``to_latent``, ``latent_start``, ``latent_norm``, ``from_latent``,
    ``final_norm``, ``head``; and ``entropy`` (a byte transformer) with "entropy" patching."""
    ks = jax.random.split(key, 12)
    dtype = jnp.dtype(cfg.param_dtype)
    d, D, k = cfg.d_local, cfg.d_model, cfg.decoder_kv_per_patch
    params = {
        "byte_embed": {"embedding": (jax.random.normal(ks[0], (cfg.vocab_size, d)) * 0.02).astype(dtype)},
        "ngram_embed": {"embedding": (jax.random.normal(
            ks[1], (len(cfg.ngram_sizes), cfg.ngram_table_size, d)) * 0.02).astype(dtype)},
        "encoder": transformer.init_layers(cfg.encoder, ks[2]),
        "patch_cross": _init_cross(ks[3], d, d, cfg.local_heads, dtype),
        "to_latent": init_dense(ks[4], (d,), (D,), dtype=dtype),
        "latent_start": (jax.random.normal(ks[5], (D,)) * 0.02).astype(dtype),
        "latent": transformer.init_layers(cfg.latent, ks[6]),
        "latent_norm": init_norm(D, "rms", dtype),
        "from_latent": init_dense(ks[7], (D,), (k, d), dtype=dtype),
        "byte_cross": _init_cross(ks[8], d, d, cfg.local_heads, dtype),
        "decoder": transformer.init_layers(cfg.decoder, ks[9]),
        "final_norm": init_norm(d, "rms", dtype),
        "head": init_dense(ks[10], (d,), (cfg.vocab_size,), dtype=dtype),
    }
    if cfg.patching == "entropy":
        params["entropy"] = transformer.init(cfg.entropy_model, ks[11])
    return params


def with_entropy_model(params: dict, entropy_params: dict) -> dict:
    """``params`` with ``entropy_params`` (a trained ``cfg.entropy_model`` transformer) as the
    frozen entropy model; ValueError when the structure or shapes differ."""
    if "entropy" not in params:
        raise ValueError("params have no 'entropy' model: the config's patching is not 'entropy'")
    want = jax.tree.map(jnp.shape, params["entropy"])
    got = jax.tree.map(jnp.shape, entropy_params)
    if want != got:
        raise ValueError(f"entropy params do not match the config's entropy_model: {got} != {want}")
    return {**params, "entropy": entropy_params}


def ngram_hashes(tokens_BT: jax.Array, positions_BT: jax.Array, sizes: tuple[int, ...],
                 table_size: int) -> jax.Array:
    """ids [#n, B, T] (int32) in [0, table_size): hash_n(t) of the module docstring for each n in
    ``sizes``; bytes before a sequence's start (position_t - i < 0) count as 0."""
    if not sizes:  # byte embeddings only (the ablation without n-grams)
        return jnp.zeros((0,) + tokens_BT.shape, jnp.int32)
    tok = tokens_BT.astype(jnp.uint32) + jnp.uint32(1)
    h = jnp.zeros(tokens_BT.shape, jnp.uint32)
    out = {}
    T = tokens_BT.shape[1]
    for i in range(max(sizes)):
        if i < T:
            shifted = jnp.pad(tok, ((0, 0), (i, 0)))[:, :T]  # x'_{t-i}
            shifted = jnp.where(positions_BT >= i, shifted, jnp.uint32(0))
            h = h + shifted * jnp.uint32(pow(HASH_BASE, i, 2 ** 32))
        if i + 1 in sizes:
            out[i + 1] = (h % jnp.uint32(table_size)).astype(jnp.int32)
    return jnp.stack([out[n] for n in sizes])


def embed_bytes(params: dict, tokens_BT: jax.Array, positions_BT: jax.Array, cfg: Config) -> jax.Array:
    """e [B, T, d] = (E[x_t] + sum_n E_n[hash_n(t)]) / (1 + #n)."""
    ids_NBT = ngram_hashes(tokens_BT, positions_BT, cfg.ngram_sizes, cfg.ngram_table_size)
    tables = params["ngram_embed"]["embedding"]
    e_BTd = params["byte_embed"]["embedding"][tokens_BT]
    for n in range(len(cfg.ngram_sizes)):
        e_BTd = e_BTd + tables[n][ids_NBT[n]]
    return (e_BTd / (1 + len(cfg.ngram_sizes))).astype(cfg.dtype)


def _cross_attend(p: dict, x_BTd: jax.Array, kv_BSe: jax.Array, q_seg_BT: jax.Array, kv_seg_BS: jax.Array,
                  cfg: Config) -> jax.Array:
    """Multi-head cross-attention (no positions) where query t sees key s iff
    q_seg[t] == kv_seg[s]; a query with no key gets 0."""
    q = dense(p["q"], rms_norm(p["q_norm"], x_BTd, cfg.norm_eps), "btd,dhk->bthk")
    kv_in = rms_norm(p["kv_norm"], kv_BSe, cfg.norm_eps)
    k = dense(p["k"], kv_in, "bsd,dhk->bshk")
    v = dense(p["v"], kv_in, "bsd,dhk->bshk")
    out = attention(q, k, v, causal=False, segment_ids=(q_seg_BT, kv_seg_BS), impl=cfg.attention_impl)
    return dense(p["o"], out, "bthk,hkd->btd")


def _segments(tokens_BT, positions_BT, segment_ids_BT):
    B, T = tokens_BT.shape
    if positions_BT is None:
        positions_BT = jnp.broadcast_to(jnp.arange(T), (B, T))
    if segment_ids_BT is None:
        segment_ids_BT = jnp.ones((B, T), jnp.int32)
    return positions_BT.astype(jnp.int32), segment_ids_BT.astype(jnp.int32)


def patch_starts(params: dict, tokens_BT: jax.Array, cfg: Config, *, positions_BT: jax.Array | None = None,
                 segment_ids_BT: jax.Array | None = None) -> jax.Array:
    """starts [B, T] (bool) of ``cfg.patching`` (module docstring), with a start wherever the
    segment id changes and at most ``max_patch_len`` bytes per patch."""
    positions_BT, segment_ids_BT = _segments(tokens_BT, positions_BT, segment_ids_BT)
    seg_change_BT = jnp.concatenate([jnp.ones_like(segment_ids_BT[:, :1], bool),
                                     segment_ids_BT[:, 1:] != segment_ids_BT[:, :-1]], axis=1)
    if cfg.patching == "space":
        starts = patching.patch_starts_space(tokens_BT)
    elif cfg.patching == "static":
        starts = patching.patch_starts_static(positions_BT, cfg.patch_size)
    else:
        if "entropy" not in params:
            raise ValueError("model.patching='entropy' needs params['entropy'] (init with this config)")
        frozen = jax.lax.stop_gradient(params["entropy"])
        next_H = patching.next_byte_entropy(frozen, cfg.entropy_model, tokens_BT, positions_BT=positions_BT,
                                            segment_ids_BT=segment_ids_BT)
        H_BT = jnp.where(seg_change_BT, jnp.inf, patching.byte_entropy(next_H))  # a sequence's first byte
        rule = patching.patch_starts_global if cfg.entropy_rule == "global" else patching.patch_starts_monotonic
        starts = rule(H_BT, cfg.entropy_threshold)
    starts = starts | seg_change_BT
    if cfg.max_patch_len:
        starts = patching.limit_patch_length(starts, cfg.max_patch_len)
    return starts


def num_patch_slots(cfg: Config, T: int) -> int:
    return min(cfg.max_patches, T) if cfg.max_patches else T


def _segment_sum(x_BT_, ids_BT, P):
    return jax.vmap(lambda x, i: jax.ops.segment_sum(x, i, num_segments=P))(x_BT_, ids_BT)


def _forward(params, tokens_BT, cfg: Config, positions_BT, segment_ids_BT, starts_BT):
    B, T = tokens_BT.shape
    P = num_patch_slots(cfg, T)
    ids_BT = jnp.minimum(patching.patch_ids(starts_BT), P - 1)
    slots_P = jnp.arange(P, dtype=jnp.int32)
    slots_BP = jnp.broadcast_to(slots_P, (B, P))

    # local encoder over bytes
    h_BTd = embed_bytes(params, tokens_BT, positions_BT, cfg)
    h_BTd = transformer.run_layers(params["encoder"], h_BTd, cfg.encoder, positions_BT=positions_BT,
                                   segment_ids_BT=segment_ids_BT)

    # patch queries: mean of their bytes, then each reads its own bytes
    count_BP = _segment_sum(jnp.ones((B, T), jnp.float32), ids_BT, P)
    q_BPd = _segment_sum(h_BTd.astype(jnp.float32), ids_BT, P) / jnp.maximum(count_BP, 1.0)[..., None]
    q_BPd = q_BPd.astype(h_BTd.dtype)
    q_BPd = q_BPd + _cross_attend(params["patch_cross"], q_BPd, h_BTd, slots_BP, ids_BT, cfg)
    z_BPD = dense(params["to_latent"], q_BPd, "bpd,de->bpe")

    # latent transformer: slot p reads the patches before p in its sequence
    seg_BP = jax.vmap(lambda s, i: jax.ops.segment_max(s, i, num_segments=P))(segment_ids_BT, ids_BT)
    seg_start_BT = jnp.concatenate([jnp.ones((B, 1), bool), segment_ids_BT[:, 1:] != segment_ids_BT[:, :-1]],
                                   axis=1)
    first_patch_BT = jax.lax.cummax(jnp.where(seg_start_BT, ids_BT, 0), axis=1)
    pos_BP = jax.vmap(lambda s, i: jax.ops.segment_max(s, i, num_segments=P))(ids_BT - first_patch_BT, ids_BT)
    pos_BP = jnp.maximum(pos_BP, 0)
    continues_BP = jnp.concatenate([jnp.zeros((B, 1), bool), seg_BP[:, 1:] == seg_BP[:, :-1]], axis=1)
    prev_BPD = jnp.pad(z_BPD, ((0, 0), (1, 0), (0, 0)))[:, :P]
    start_D = params["latent_start"].astype(z_BPD.dtype)
    u_BPD = jnp.where(continues_BP[..., None], prev_BPD, start_D)
    o_BPD = transformer.run_layers(params["latent"], u_BPD, cfg.latent, positions_BT=pos_BP,
                                   segment_ids_BT=seg_BP)
    o_BPD = rms_norm(params["latent_norm"], o_BPD, cfg.norm_eps)

    # local decoder: byte t reads the slots of its patch p(t)
    k = cfg.decoder_kv_per_patch
    c_BPkd = dense(params["from_latent"], o_BPD, "bpe,ekd->bpkd")
    c_BSd = c_BPkd.reshape(B, P * k, cfg.d_local)
    kv_seg_BS = jnp.repeat(slots_BP, k, axis=1)
    g_BTd = h_BTd + _cross_attend(params["byte_cross"], h_BTd, c_BSd, ids_BT, kv_seg_BS, cfg)
    g_BTd = transformer.run_layers(params["decoder"], g_BTd, cfg.decoder, positions_BT=positions_BT,
                                   segment_ids_BT=segment_ids_BT)
    g_BTd = rms_norm(params["final_norm"], g_BTd, cfg.norm_eps)
    return dense(params["head"], g_BTd, "btd,dv->btv").astype(jnp.float32)


def apply(params: dict, tokens_BT: jax.Array, cfg: Config, *, positions_BT: jax.Array | None = None,
          segment_ids_BT: jax.Array | None = None, return_hidden: bool = False,
          patch_starts_BT: jax.Array | None = None):
    """Logits [B, T, V] (float32): logits_t predicts byte t + 1 from bytes <= t.

    ``positions_BT`` (default 0..T-1; packed rows restart per sequence) place the local
    layers' RoPE and the n-gram hashes' sequence starts; ``segment_ids_BT`` keep packed
    sequences apart (own patches, attention within a sequence). ``patch_starts_BT``
    overrides the config's patching (e.g. boundaries computed elsewhere; byte 0 and segment
    changes start patches whatever it says). ``return_hidden`` is not supported."""
    if return_hidden:
        raise ValueError("blt.apply has no return_hidden (its byte stream and patch stream differ in length)")
    if tokens_BT.ndim != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tokens_BT.shape}")
    positions_BT, segment_ids_BT = _segments(tokens_BT, positions_BT, segment_ids_BT)
    if patch_starts_BT is None:
        starts_BT = patch_starts(params, tokens_BT, cfg, positions_BT=positions_BT, segment_ids_BT=segment_ids_BT)
    else:
        if patch_starts_BT.shape != tokens_BT.shape:
            raise ValueError(f"patch_starts_BT must be {tokens_BT.shape}, got {patch_starts_BT.shape}")
        seg_change = jnp.concatenate([jnp.ones_like(segment_ids_BT[:, :1], bool),
                                      segment_ids_BT[:, 1:] != segment_ids_BT[:, :-1]], axis=1)
        starts_BT = patch_starts_BT.astype(bool) | seg_change
    return _forward(params, tokens_BT, cfg, positions_BT, segment_ids_BT, starts_BT)


# ---- generation by recomputation -------------------------------------------------------------

def init_cache(cfg: Config, batch_size: int, max_len: int) -> dict:
    """The bytes so far: ``tokens`` [B, S], ``mask`` [B, S] (1 for a written byte, 0 for left
    padding and empty slots), ``index`` (the next slot to write)."""
    del cfg
    return {"tokens": jnp.zeros((batch_size, max_len), jnp.int32),
            "mask": jnp.zeros((batch_size, max_len), jnp.int32),
            "index": jnp.zeros((), jnp.int32)}


CACHE_ROW_AXIS = {"tokens": 0, "mask": 0, "index": None}


def _recompute(params, tokens_BT, cfg, cache, mask_BT):
    T = tokens_BT.shape[1]
    if T > cache["tokens"].shape[1]:
        raise ValueError(f"{T} tokens do not fit a cache of {cache['tokens'].shape[1]} slots")
    index = cache["index"]
    all_BS = jax.lax.dynamic_update_slice_in_dim(cache["tokens"], tokens_BT.astype(jnp.int32), index, axis=1)
    mask_BS = jax.lax.dynamic_update_slice_in_dim(cache["mask"], mask_BT.astype(jnp.int32), index, axis=1)
    positions_BS = jnp.maximum(jnp.cumsum(mask_BS, axis=1) - 1, 0)
    # Slots past the written ones (mask 0 after real bytes) are a sequence of their own, after
    # the real bytes: causality keeps them out of the logits read here.
    logits_BSV = apply(params, all_BS, cfg, positions_BT=positions_BS, segment_ids_BT=mask_BS)
    logits_BTV = jax.lax.dynamic_slice_in_dim(logits_BSV, index, T, axis=1)
    return logits_BTV, {"tokens": all_BS, "mask": mask_BS, "index": index + T}


def prefill(params: dict, tokens_BT: jax.Array, cfg: Config, cache: dict, *,
            mask_BT: jax.Array | None = None, last_only: bool = False):
    """(logits [B, T, V], cache): writes the prompt (``mask_BT``: 1 real, 0 left padding) and
    reruns the model on the buffer; ``last_only`` returns the logits at T - 1 only."""
    if mask_BT is None:
        mask_BT = jnp.ones(tokens_BT.shape, jnp.int32)
    logits, cache = _recompute(params, tokens_BT, cfg, cache, mask_BT)
    return (logits[:, -1:] if last_only else logits), cache


def decode_step(params: dict, tokens_B: jax.Array, cfg: Config, cache: dict):
    """(logits [B, V], cache) after one more byte per row (the whole buffer recomputed)."""
    logits_B1V, cache = _recompute(params, tokens_B[:, None], cfg, cache,
                                   jnp.ones((tokens_B.shape[0], 1), jnp.int32))
    return logits_B1V[:, 0], cache


# ---- params: logical axes and count ----------------------------------------------------------

_CROSS_AXES = {
    "q_norm/scale": ("norm",), "kv_norm/scale": ("norm",),
    "q/kernel": ("embed", "heads", "head_dim"), "k/kernel": ("embed", "heads", "head_dim"),
    "v/kernel": ("embed", "heads", "head_dim"), "o/kernel": ("heads", "head_dim", "embed"),
}
PARAM_AXES = {
    "byte_embed/embedding": ("vocab", "embed"),
    "ngram_embed/embedding": (None, "vocab", "embed"),
    "to_latent/kernel": (None, "embed"),
    "latent_start": ("embed",),
    "latent_norm/scale": ("norm",),
    "from_latent/kernel": ("embed", None, None),
    "final_norm/scale": ("norm",),
    "head/kernel": ("embed", "vocab"),
}


def param_axes(path: str) -> tuple[str | None, ...]:
    """Logical axis names of the param at ``path``: the blocks of ``encoder/``, ``latent/``,
    ``decoder/`` and the ``entropy/`` model as in :mod:`jaxlab.models.transformer`."""
    head, _, rest = path.partition("/")
    if head in ("encoder", "latent", "decoder"):
        return transformer.param_axes("layers/" + rest)
    if head == "entropy":
        return transformer.param_axes(rest)
    if head in ("patch_cross", "byte_cross") and rest in _CROSS_AXES:
        return _CROSS_AXES[rest]
    if path not in PARAM_AXES:
        raise KeyError(f"no logical axes known for BLT param {path!r}")
    return PARAM_AXES[path]


def count_params(params: dict) -> int:
    """Parameters of the BLT itself (the frozen entropy model excluded)."""
    return int(sum(x.size for name, sub in params.items() if name != "entropy" for x in jax.tree.leaves(sub)))


__all__ = ["Config", "init", "apply", "patch_starts", "ngram_hashes", "embed_bytes", "with_entropy_model",
           "num_patch_slots", "init_cache", "CACHE_ROW_AXIS", "prefill", "decode_step",
           "param_axes", "count_params", "HASH_BASE"]
