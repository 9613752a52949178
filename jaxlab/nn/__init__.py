"""Stateless building blocks: ``init_*(key, ...) -> params`` and pure apply functions."""

from jaxlab.nn.attention import AttentionConfig, attention_block, init_attention
from jaxlab.nn.embed import embed, init_embedding, unembed
from jaxlab.nn.linear import dense, init_dense
from jaxlab.nn.mlp import init_mlp, mlp
from jaxlab.nn.norms import init_norm, layer_norm, norm, rms_norm
from jaxlab.nn.rope import RopeScaling, apply_rope, inv_frequencies, rope_tables, rotary_dim, rotate

__all__ = [
    "AttentionConfig", "attention_block", "init_attention", "embed", "init_embedding", "unembed",
    "dense", "init_dense", "init_mlp", "mlp", "init_norm", "layer_norm", "norm", "rms_norm",
    "RopeScaling", "apply_rope", "inv_frequencies", "rope_tables", "rotary_dim", "rotate",
]
