"""The BIO tagging trainer: padded rows and labels, the loss falls, a run resumes, and the
tagger's records are scored like a decoder's."""

import jax
import numpy as np
import pytest

from jaxlab.models import encoder
from jaxlab.tasks.documents import bio_label_names, render_document
from jaxlab.tasks.documents.generator import SCHEMAS
from jaxlab.train import sharding as shd
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.tagging import TaggingConfig, extract_records, tagging_rows, train_tagger

FIELDS = SCHEMAS["receipt"]
ENC = encoder.EncoderConfig(vocab_size=259, d_model=32, n_layers=1, n_heads=2, head_dim=16, mlp_dim=64)


def _docs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [render_document(rng, 2, kind="receipt", layout="kv") for _ in range(n)]


def test_rows_label_each_byte_and_pad_with_segment_zero():
    doc = _docs(1)[0]
    names = bio_label_names(FIELDS)
    rows = tagging_rows([doc], names, 512)
    n = len(doc.text.encode())
    assert rows["segment_ids"][0].sum() == n and rows["segment_ids"][0, n:].sum() == 0
    assert bytes(rows["tokens"][0, :n].astype(np.uint8)).decode() == doc.text
    field, (s, e) = next(iter(doc.spans.items()))
    b = len(doc.text[:s].encode())
    assert names[rows["labels"][0, b]] == f"B-{field}" and names[rows["labels"][0, b + 1]] == f"I-{field}"
    with pytest.raises(ValueError, match="more than seq_len=8"):
        tagging_rows([doc], names, 8)


@pytest.mark.slow
def test_training_lowers_the_loss_resumes_and_decodes_records(tmp_path):
    docs = _docs(16)
    mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    optim = OptimConfig(lr=3e-3, warmup_steps=2, schedule="constant", weight_decay=0.0)
    cfg = TaggingConfig(fields=FIELDS, batch_size=4, seq_len=384,
                        loop=LoopConfig(steps=12, log_every=1, eval_every=12, checkpoint_every=6))
    half = TaggingConfig(fields=FIELDS, batch_size=4, seq_len=384,
                         loop=LoopConfig(steps=6, log_every=1, eval_every=6, checkpoint_every=6))
    first = train_tagger(tmp_path / "a", docs, encoder_cfg=ENC, cfg=half, optim=optim, mesh=mesh, progress=False)
    assert "mlm" not in first.state.params and "classifier" in first.state.params
    resumed = train_tagger(tmp_path / "a", docs, encoder_cfg=ENC, cfg=cfg, optim=optim, mesh=mesh, progress=False)
    assert resumed.resumed_from == 6
    losses = [r["train/loss"] for r in resumed.records if "train/loss" in r]
    assert len(losses) == 12 and np.mean(losses[-3:]) < 0.7 * losses[0]
    records = extract_records(resumed.state.params, docs[:3], ENC, cfg, batch_size=2)
    assert [set(r) for r in records] == [set(d.record) for d in docs[:3]]
    assert all(v is None or isinstance(v, str) for r in records for v in r.values())
