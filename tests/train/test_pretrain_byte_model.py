"""pretrain_byte_model refuses a model that is not a byte model (that a finished base is only
read is tested on the representation_geometry smoke run, which pre-trains one)."""

import pytest

from jaxlab.models import transformer
from jaxlab.train.loop import pretrain_byte_model


def test_a_model_without_room_for_the_bytes_is_refused(tmp_path):
    cfg = transformer.Config(vocab_size=128, d_model=16, n_layers=1, n_heads=1, n_kv_heads=1, head_dim=16, mlp_dim=32)
    with pytest.raises(ValueError, match="vocab_size >= 259"):
        pretrain_byte_model(tmp_path, cfg, steps=2)
    assert not any(tmp_path.iterdir())
