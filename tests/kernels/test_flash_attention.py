"""The Pallas flash-attention kernels (interpret mode on CPU) against the reference."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_checks import (BF16_FWD_REL, BF16_GRAD_REL, F32_REL, assert_close,
                           kernel_and_reference, lower_for_cuda, packed_segments, random_qkv)

from jaxlab.kernels import UnsupportedError, attention
from jaxlab.kernels.attention import attention_reference, flash_attention
from jaxlab.kernels.attention import pallas as flash
from jaxlab.kernels.attention.pallas import BlockSizes

# 16-wide tiles: every test shape spans several query and key blocks.
SMALL = BlockSizes(block_q=16, block_k=16, block_q_bwd=16, block_k_bwd=16)

# name: (T, S, H, K, Dh, causal, window, segments, q_offset)
CASES = {
    "causal-mha-odd-length": (37, 37, 2, 2, 64, True, None, False, 0),
    "causal-window-gqa4": (70, 70, 4, 1, 64, True, 7, False, 0),
    "bidirectional-cross-gqa8-head-dim-40": (29, 45, 8, 1, 40, False, None, False, 0),
    "bidirectional-window": (40, 40, 2, 2, 64, False, 9, False, 0),
    "segments-with-empty-rows-gqa2": (48, 48, 4, 2, 64, True, None, True, 0),
    "query-offset-window": (9, 40, 4, 2, 64, True, 5, False, 31),
    "causal-head-dim-128": (24, 24, 2, 1, 128, True, None, False, 0),
}
SLOW = {"bidirectional-window", "causal-head-dim-128", "query-offset-window"}


def run_case(case, dtype, *, kind="softmax", power=1.0, reference=attention_reference, seed=0):
    """Kernel and float32 reference: (out, grads) of each at the same (rounded) inputs."""
    T, S, H, K, Dh, causal, window, segments, q_offset = case
    q, k, v, do = random_qkv(seed, 2, T, S, H, K, Dh, dtype)
    q_seg, kv_seg = packed_segments(T, 2, empty_tail=7) if segments else (None, None)
    masks = dict(causal=causal, window=window, q_segment_ids_BT=q_seg, kv_segment_ids_BS=kv_seg,
                 q_offset=q_offset, scale=Dh ** -0.5)
    extra = {} if kind == "softmax" else {"power": power}
    kernel = functools.partial(flash_attention, kind=kind, power=power, block_sizes=SMALL, **masks)
    return kernel_and_reference(kernel, functools.partial(reference, **masks, **extra), (q, k, v), do)


def check_case(got, want, dtype, name):
    (out, grads), (ref_out, ref_grads) = got, want
    chex.assert_type(out, dtype)
    fwd_rel, grad_rel = (F32_REL, F32_REL) if dtype == jnp.float32 else (BF16_FWD_REL, BF16_GRAD_REL)
    assert_close(out, ref_out, fwd_rel, f"{name} out")
    for g, r, n in zip(grads, ref_grads, "qkv"):
        chex.assert_type(g, dtype)
        assert_close(g, r, grad_rel, f"{name} d{n}")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in CASES])
def test_f32_values_and_gradients_match_the_reference(name):
    got, want = run_case(CASES[name], jnp.float32)
    check_case(got, want, jnp.float32, name)
    if CASES[name][7]:  # queries whose segment has no key: zero output, zero dq
        out, (dq, _, _) = got
        np.testing.assert_array_equal(out[0, -7:], 0.0)
        np.testing.assert_array_equal(dq[0, -7:], 0.0)


@pytest.mark.parametrize("name", ["causal-window-gqa4", "segments-with-empty-rows-gqa2"])
def test_bf16_values_and_gradients_match_the_f32_reference(name):
    got, want = run_case(CASES[name], jnp.bfloat16)
    check_case(got, want, jnp.bfloat16, name)


def test_dispatcher_runs_the_kernel_only_when_asked_on_cpu():
    q, k, v, _ = random_qkv(1, 1, 20, 20, 2, 1, 16, jnp.float32)
    jaxpr = lambda impl: str(jax.make_jaxpr(functools.partial(attention, impl=impl))(q, k, v))  # noqa: E731
    assert "pallas_call" in jaxpr("pallas")
    assert "pallas_call" not in jaxpr("auto")
    assert_close(attention(q, k, v, impl="pallas"), attention_reference(q, k, v), F32_REL)


def test_explicit_impls_refuse_unsupported_calls_clearly():
    q, k, v, _ = random_qkv(2, 1, 8, 8, 2, 2, 16, jnp.float32)
    with pytest.raises(UnsupportedError, match="cuDNN attention needs a GPU"):
        attention(q, k, v, impl="cudnn")
    with pytest.raises(UnsupportedError, match="q_offset must be a static int"):
        jax.jit(lambda q, k, v, off: attention(q, k, v, q_offset=off, impl="pallas"))(q, k, v, 0)
    with pytest.raises(UnsupportedError, match="dtype"):
        attention(q.astype(jnp.float16), k, v, impl="pallas")


def test_auto_on_gpu_falls_back_and_logs_the_reason_once(monkeypatch, caplog):
    from jaxlab.kernels import _pallas
    monkeypatch.setattr(_pallas, "backend", lambda: "gpu")
    monkeypatch.setattr(_pallas, "_NOTED", set())
    q, k, v, _ = random_qkv(3, 1, 8, 12, 2, 2, 16, jnp.float32)
    fn = jax.jit(lambda q, k, v, off: attention(q, k, v, q_offset=off))
    with caplog.at_level("INFO", logger="jaxlab.kernels"):
        out = fn(q, k, v, 4)
        jax.jit(lambda q, k, v, off: attention(q, k, v, q_offset=off) * 2)(q, k, v, 4)
    assert_close(out, attention_reference(q, k, v, q_offset=4), F32_REL)
    notes = [r.message for r in caplog.records if "q_offset must be a static int" in r.message]
    assert len(notes) == 1 and "'xla'" in notes[0]


# ----------------------------------------------------------------------------- block ranges


def _allowed(T, S, causal, window, q_offset):
    p = np.arange(T)[:, None] + q_offset
    s = np.arange(S)[None, :]
    ok = np.ones((T, S), bool)
    if causal:
        ok &= s <= p
    if window is not None:
        ok &= (p - s < window) if causal else (np.abs(p - s) < window)
    return ok


@given(T=st.integers(1, 70), S=st.integers(1, 70), causal=st.booleans(),
       window=st.one_of(st.none(), st.integers(1, 40)), q_offset=st.integers(0, 30),
       bq=st.sampled_from([4, 8, 16]), bk=st.sampled_from([4, 8, 16]))
def test_block_ranges_cover_every_allowed_pair_and_full_blocks_need_no_mask(
        T, S, causal, window, q_offset, bq, bk):
    ok = _allowed(T, S, causal, window, q_offset)
    stc = flash._Static(kind="softmax", causal=causal, window=window, q_offset=q_offset, T=T, S=S,
                        G=1, scale=1.0, power=1.0, segments=False, bq=bq, bk=bk, bq_bwd=bq,
                        bk_bwd=bk, num_warps=4, num_warps_bwd=4, num_stages=2, interpret=True)
    Tp, Sp = -(-T // bq) * bq, -(-S // bk) * bk
    okp = np.zeros((Tp, Sp), bool)
    okp[:T, :S] = ok
    for i in range(Tp // bq):  # key blocks of each query block
        rows = okp[i * bq:(i + 1) * bq]
        p_last = min(i * bq + bq, T) - 1 + q_offset
        lo, flo, fhi, hi = (int(x) for x in flash._key_block_ranges(
            stc, jnp.int32(i * bq + q_offset), jnp.int32(p_last), bk, pad_is_masked=True))
        assert lo <= flo <= fhi <= hi
        visible = [j for j in range(Sp // bk) if rows[:, j * bk:(j + 1) * bk].any()]
        assert all(lo <= j < hi for j in visible)
        real_rows = rows[:min(bq, T - i * bq)]
        assert all(real_rows[:, j * bk:(j + 1) * bk].all() for j in range(flo, fhi))
    for j in range(Sp // bk):  # query blocks of each key block (backward)
        cols = okp[:, j * bk:(j + 1) * bk]
        s_last = min(j * bk + bk, S) - 1
        lo, flo, fhi, hi = (int(x) for x in flash._query_block_ranges(
            stc, jnp.int32(j * bk), jnp.int32(s_last), bq))
        assert lo <= flo <= fhi <= hi
        visible = [i for i in range(Tp // bq) if cols[i * bq:(i + 1) * bq].any()]
        assert all(lo <= i < hi for i in visible)
        real_cols = cols[:, :min(bk, S - j * bk)]
        for i in range(flo, fhi):
            assert real_cols[i * bq:min((i + 1) * bq, T)].all()


def test_sliding_window_visits_a_number_of_blocks_set_by_the_window_not_the_length():
    def visited(S, window):
        stc = flash._Static(kind="softmax", causal=True, window=window, q_offset=0, T=S, S=S, G=1,
                            scale=1.0, power=1.0, segments=False, bq=64, bk=64, bq_bwd=64,
                            bk_bwd=64, num_warps=4, num_warps_bwd=4, num_stages=2, interpret=True)
        counts = []
        for i in range(0, S // 64, 7):
            lo, _, _, hi = flash._key_block_ranges(stc, jnp.int32(i * 64), jnp.int32(i * 64 + 63),
                                                   64, pad_is_masked=True)
            counts.append(int(hi - lo))
        return max(counts)

    assert visited(4096, 256) == visited(65536, 256) == 256 // 64 + 1
    assert visited(65536, 1024) == 1024 // 64 + 1


# ----------------------------------------------------------------------------- GPU lowering


@pytest.mark.parametrize("kind,dtype,window,segments", [
    ("softmax", jnp.bfloat16, 128, False), ("softmax", jnp.float32, None, True),
    ("softplus", jnp.bfloat16, None, True)])
def test_forward_and_backward_lower_to_triton_for_a_cuda_gpu(kind, dtype, window, segments):
    B, T, H, K, Dh = 2, 300, 8, 2, 128
    q = jax.ShapeDtypeStruct((B, T, H, Dh), dtype)
    kv = jax.ShapeDtypeStruct((B, T, K, Dh), dtype)
    seg = jax.ShapeDtypeStruct((B, T), jnp.int32)

    def grads(q, k, v, seg_ids):
        seg_ids = seg_ids if segments else None
        loss = lambda q, k, v: flash_attention(  # noqa: E731
            q, k, v, causal=True, window=window, q_segment_ids_BT=seg_ids,
            kv_segment_ids_BS=seg_ids, scale=0.1, kind=kind, power=2.0,
            interpret=False).astype(jnp.float32).sum()
        return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

    module = lower_for_cuda(grads, q, kv, kv, seg)
    assert module.count("__gpu$xla.gpu.triton") == 3  # forward, dk/dv, dq
