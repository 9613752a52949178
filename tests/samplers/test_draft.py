"""Drafts made from the target: pruning keeps the asked number of layers, frequent tokens are
ranked by count, and a saved draft loads with its restricted head giving the same logits."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import transformer
from jaxlab.samplers.draft import frequent_tokens, load_draft, prune_draft, save_draft
from jaxlab.samplers.speculative import restrict_head

CFG = transformer.Config(vocab_size=40, d_model=16, n_layers=3, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32)


def test_frequent_tokens_ranks_by_count_then_id():
    lists = [[5, 5, 5, 2, 2, 9], [2, 7, 7, 1]]
    assert frequent_tokens(lists, 2).tolist() == [2, 5]          # 2 and 5 three times each
    assert frequent_tokens(lists, 3).tolist() == [2, 5, 7]       # then 7 (twice)
    assert frequent_tokens(lists, 1, always=[0]).tolist() == [0, 2]
    with pytest.raises(ValueError):
        frequent_tokens(lists, 0)


def test_pruned_draft_saved_and_loaded_with_a_restricted_head(tmp_path):
    params = transformer.init(CFG, jax.random.key(0))
    d_cfg, d_params, first = prune_draft(params, CFG, [[1, 2, 3], [5, 6, 7]], keep=2)
    assert d_cfg.n_layers == 2 and 0 <= first <= 2
    assert jax.tree.leaves(d_params["layers"])[0].shape[0] == 2
    ids = np.array([0, 3, 4, 11, 39])
    save_draft(tmp_path / "draft", d_cfg, d_params, ids)
    cfg2, params2, vocab = load_draft(tmp_path / "draft")
    assert vocab.tolist() == ids.tolist() and not cfg2.tie_embeddings
    tokens = jnp.asarray([[1, 2, 3]])
    full = transformer.apply(d_params, tokens, d_cfg)
    np.testing.assert_allclose(transformer.apply(params2, tokens, cfg2), full[..., ids], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(transformer.apply(restrict_head(d_params, d_cfg, ids),
                                                 tokens, dataclasses.replace(d_cfg, tie_embeddings=False)),
                               full[..., ids], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="keep"):
        prune_draft(params, CFG, [[1]], keep=3)
