"""Activation sharding contract: traced on an AbstractMesh, the transformer's program constrains
every named activation to the sharding its logical axes declare, under data, fsdp and tensor
meshes; ``mesh.rules`` changes params and activations together; no context mesh, no constraint."""

import functools

import jax
import jax.extend
import jax.numpy as jnp
import pytest
from jax.sharding import AbstractMesh, AxisType, PartitionSpec as P

from jaxlab import cli
from jaxlab.models import transformer as tf
from jaxlab.nn import partitioning
from jaxlab.train import sharding as shd

CFG = tf.Config(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=8, mlp_dim=64)
B, T = 8, 16


def _mesh(data, fsdp, tensor):
    return AbstractMesh((data, fsdp, tensor), shd.MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def _constraints(jaxpr) -> dict[str, set]:
    """{activation name: the specs of its sharding constraints} over a jaxpr and its sub-jaxprs
    (the layer scan, remat)."""
    found: dict[str, set] = {}

    def walk(j):
        for eqn in j.eqns:
            if eqn.primitive.name == "sharding_constraint":
                scopes = [s for s in str(eqn.source_info.name_stack).split("/")]
                name = scopes[scopes.index("activation") + 1]
                found.setdefault(name, set()).add(eqn.params["sharding"].spec)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jaxpr)
    return found


def _traced(mesh, rules=None, remat="none"):
    cfg = tf.Config(**{**CFG.__dict__, "remat": remat})
    params = jax.eval_shape(tf.init, cfg, jax.random.key(0))
    tokens = jax.ShapeDtypeStruct((B, T), jnp.int32)
    with jax.sharding.use_abstract_mesh(mesh), partitioning.use_rules(rules):
        return jax.make_jaxpr(functools.partial(tf.apply, cfg=cfg))(params, tokens).jaxpr


# The contract, written out: mesh (data, fsdp, tensor) -> activation -> spec.
EXPECTED = {
    (8, 1, 1): {"residual": P("data", None, None), "attn_q": P("data", None, None, None),
                "attn_kv": P("data", None, None, None), "attn_heads": P("data", None, None, None),
                "mlp_hidden": P("data", None, None), "logits": P("data", None, None)},
    (2, 4, 1): {"residual": P(("data", "fsdp"), None, None), "attn_q": P(("data", "fsdp"), None, None, None),
                "attn_kv": P(("data", "fsdp"), None, None, None),
                "attn_heads": P(("data", "fsdp"), None, None, None),
                "mlp_hidden": P(("data", "fsdp"), None, None), "logits": P(("data", "fsdp"), None, None)},
    (2, 1, 4): {"residual": P("data", None, None), "attn_q": P("data", None, "tensor", None),
                "attn_kv": P("data", None, "tensor", None), "attn_heads": P("data", None, "tensor", None),
                "mlp_hidden": P("data", None, "tensor"), "logits": P("data", None, None)},
}


@pytest.mark.parametrize("sizes", list(EXPECTED), ids=["data", "fsdp", "tensor"])
def test_every_named_activation_has_its_declared_sharding(sizes):
    found = _constraints(_traced(_mesh(*sizes)))
    assert set(found) == set(partitioning.ACTIVATION_AXES)
    for name, spec in EXPECTED[sizes].items():
        assert found[name] == {spec}, name


def test_constraints_survive_remat_and_rules_move_params_and_activations_together():
    mesh = _mesh(2, 1, 4)
    assert _constraints(_traced(mesh, remat="full"))["mlp_hidden"] == {P("data", None, "tensor")}
    rules = shd.MeshConfig(rules=("mlp=none", "heads=none", "kv_heads=none")).logical_rules()
    found = _constraints(_traced(mesh, rules))
    assert found["mlp_hidden"] == {P("data", None, None)}
    assert found["attn_q"] == {P("data", None, None, None)}
    params = jax.eval_shape(tf.init, CFG, jax.random.key(0))
    mesh8 = shd.make_mesh(shd.MeshConfig(data=2, tensor=4))
    default = shd.tree_shardings(params, mesh8, tf.param_axes)
    changed = shd.tree_shardings(params, mesh8, tf.param_axes, rules)
    assert default["layers"]["mlp"]["down"]["kernel"].spec == P(None, "tensor", None)
    assert changed["layers"]["mlp"]["down"]["kernel"].spec == P(None, None, None)


def test_no_context_mesh_means_no_constraint():
    params = jax.eval_shape(tf.init, CFG, jax.random.key(0))
    jaxpr = jax.make_jaxpr(functools.partial(tf.apply, cfg=CFG))(params, jax.ShapeDtypeStruct((B, T), jnp.int32))
    assert _constraints(jaxpr.jaxpr) == {}


@pytest.mark.parametrize("entry,message", [
    ("mlps=none", "unknown logical axis 'mlps'"),
    ("mlp=model", "unknown mesh axes ['model']"),
    ("batch=data+data", "an axis twice"),
    ("mlp", "must read 'logical=axis'"),
])
def test_bad_rules_are_refused_by_name(entry, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        shd.MeshConfig(rules=(entry,))
    assert shd.MeshConfig(rules=("batch=data+fsdp", "embed=none")).logical_rules()["embed"] is None


def test_the_runner_refuses_a_bad_rule_before_training(tmp_path, capsys):
    code = cli.main(["run", "experiments/quickstart.py", "--workdir", str(tmp_path), "--no-progress",
                     "--set", "mesh.rules=mlp=gpu"])
    assert code != 0
    assert "unknown mesh axes ['gpu']" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()
