"""pretrain_byte_model: a finished base is only read (shared bases are not rewritten), and a
model that is not a byte model is refused."""

import jax
import numpy as np
import pytest

from jaxlab.models import transformer
from jaxlab.train.loop import pretrain_byte_model

CFG = transformer.Config(vocab_size=259, d_model=16, n_layers=1, n_heads=1, n_kv_heads=1, head_dim=16, mlp_dim=32)


def test_a_finished_base_is_read_without_writing(tmp_path):
    params = pretrain_byte_model(tmp_path, CFG, steps=2, batch_size=8, seq_len=32, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again = pretrain_byte_model(tmp_path, CFG, steps=2, batch_size=8, seq_len=32, progress=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="vocab_size >= 259"):
        pretrain_byte_model(tmp_path / "x", transformer.Config(vocab_size=128, d_model=16, n_layers=1, n_heads=1,
                                                               n_kv_heads=1, head_dim=16, mlp_dim=32), steps=2)
