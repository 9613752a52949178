"""The Pallas kernels on a mesh of 8 fake CPU devices (interpret mode): under a context mesh
they run inside shard_map over the batch and head axes, equal the reference forward and
backward on data, fsdp and tensor meshes, and compile without gathering q, k or v."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxlab.kernels import UnsupportedError, attention
from jaxlab.train.sharding import MeshConfig, make_mesh

MESHES = {"data": MeshConfig(data=8), "fsdp": MeshConfig(data=1, fsdp=8), "tensor": MeshConfig(data=4, tensor=2)}
B, T, H, K, D = 8, 32, 4, 2, 16


def _qkv(seed=0):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(kq, (B, T, H, D)), jax.random.normal(kk, (B, T, K, D)),
            jax.random.normal(kv, (B, T, K, D)))


def _loss(impl, kind="softmax"):
    def f(q, k, v, seg):
        out = attention(q, k, v, causal=True, segment_ids=seg, impl=impl, kind=kind)
        return jnp.sum(out * jnp.cos(out)), out
    return f


def _placed(mesh, arrays):
    """q, k, v, segment ids placed as a trainer's step holds them: batch over data and fsdp,
    heads over tensor."""
    head = "tensor" if mesh.shape["tensor"] > 1 else None
    sh = NamedSharding(mesh, P(("data", "fsdp"), None, head, None))
    return [jax.device_put(x, sh) for x in arrays[:3]] + [
        jax.device_put(arrays[3], NamedSharding(mesh, P(("data", "fsdp"), None)))]


@pytest.mark.slow
@pytest.mark.parametrize("name,kind", [("data", "softmax"), ("fsdp", "softmax"), ("tensor", "softmax"),
                                       ("tensor", "softplus")])
def test_sharded_kernel_equals_the_reference_forward_and_backward(name, kind):
    mesh = make_mesh(MESHES[name])
    seg = jnp.asarray(np.repeat(np.array([[1] * 20 + [2] * 12]), B, 0), jnp.int32)
    args = _placed(mesh, [*_qkv(), seg])
    grad = jax.value_and_grad(_loss("pallas", kind), argnums=(0, 1, 2), has_aux=True)
    with jax.set_mesh(mesh):
        (_, out), grads = jax.jit(grad)(*args)
    (_, ref_out), ref_grads = jax.jit(jax.value_and_grad(_loss("xla", kind), argnums=(0, 1, 2), has_aux=True))(
        *_qkv(), seg)
    np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=5e-5, rtol=1e-4)


def test_a_data_parallel_step_gathers_no_q_k_or_v():
    mesh = make_mesh(MESHES["data"])
    seg = jnp.ones((B, T), jnp.int32)
    args = _placed(mesh, [*_qkv(), seg])
    def hlo():
        return jax.jit(lambda *a: _loss("pallas")(*a)[1]).lower(*args).compile().as_text()

    with jax.set_mesh(mesh):
        assert "all-gather" not in hlo()
    assert "all-gather" in hlo()  # without the context mesh XLA gathers the kernel's inputs


def test_a_mesh_axis_that_would_split_the_sequence_is_refused_by_name():
    devices = np.array(jax.devices()[:8]).reshape(4, 2)
    mesh = jax.make_mesh((4, 2), ("data", "seq"), axis_types=(jax.sharding.AxisType.Auto,) * 2,
                         devices=devices.reshape(-1))
    q, k, v = _qkv()
    with jax.set_mesh(mesh), pytest.raises(UnsupportedError, match="'seq' \\(size 2\\) would split the sequence"):
        jax.jit(lambda q, k, v: attention(q, k, v, impl="pallas"))(q, k, v)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["data", "tensor"])
def test_sharded_scans_equal_the_reference_forward_and_backward(name):
    from jaxlab.kernels import linear_scan, selective_scan

    mesh = make_mesh(MESHES[name])
    Bs, Ts, Ds, N = 8, 16, 4, 4
    ks = jax.random.split(jax.random.key(2), 6)
    a = jax.nn.sigmoid(jax.random.normal(ks[0], (Bs, Ts, Ds)))
    b = jax.random.normal(ks[1], (Bs, Ts, Ds))
    delta = jax.nn.softplus(jax.random.normal(ks[2], (Bs, Ts, Ds)))
    A = -jnp.exp(jax.random.normal(ks[3], (Ds, N)))
    Bm, Cm = jax.random.normal(ks[4], (Bs, Ts, N)), jax.random.normal(ks[5], (Bs, Ts, N))
    Dd = jnp.linspace(0.5, 1.5, Ds)

    def loss(impl):
        def f(a, b, delta, A):
            h = linear_scan(a, b, impl=impl)
            y = selective_scan(b, delta, A, Bm, Cm, Dd, impl=impl)
            return jnp.sum(jnp.sin(h)) + jnp.sum(y * y), (h, y)
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True))

    chan = "tensor" if name == "tensor" else None
    place = lambda x: jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"), None, chan)))  # noqa: E731
    with jax.set_mesh(mesh):
        (_, (h, y)), grads = loss("pallas")(place(a), place(b), place(delta), A)
    (_, (h_ref, y_ref)), ref_grads = loss("xla")(a, b, delta, A)
    np.testing.assert_allclose(h, h_ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(y, y_ref, atol=1e-4, rtol=1e-4)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=2e-4, rtol=2e-4)
