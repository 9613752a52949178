"""Quickstart: a byte-level decoder LM trained on Python's own documentation.

The embedded corpus is the English text of ``pydoc_data.topics`` (about 465 KB, shipped with
every Python), split 95/5 into train and validation chunks. On a 2-core CPU the default run
takes about 5 minutes and reports validation bits per byte, a generated sample and the loss
curves.

    jaxlab run experiments/quickstart.py                      # or: make run
    jaxlab run experiments/quickstart.py --set train.steps=100 --workdir /tmp/qs   # a smoke run
    jaxlab run experiments/quickstart.py --set data.path=my_corpus/   # your own text
"""

from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig
from jaxlab.train.config import ExperimentConfig, TrainConfig
from jaxlab.train.optim import OptimConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="quickstart",
        model=transformer.Config(
            vocab_size=264, d_model=256, n_layers=4, n_heads=4, n_kv_heads=4, head_dim=64,
            mlp_dim=768, rope_base=10000.0),
        optim=OptimConfig(lr=3e-3, warmup_steps=100, schedule="cosine", final_lr_fraction=0.1,
                          weight_decay=0.1, clip_norm=1.0),
        train=TrainConfig(steps=1000, batch_size=16, seq_len=256, eval_every=250, eval_batches=16,
                          checkpoint_every=250, log_every=10),
        sample=SampleConfig(max_new_tokens=200, temperature=0.8, top_k=0, top_p=0.95),
        prompt="The ",
    )
