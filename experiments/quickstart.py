"""Quickstart: a byte-level decoder LM trained on Python's own documentation.

The embedded corpus is the English text of ``pydoc_data.topics`` (about 465 KB, shipped with
every Python), split 95/5 into train and validation chunks. On a 2-core CPU the default run
takes about 5 minutes and reports validation bits per byte, a generated sample and the loss
curves. The model size and step count are the best of the candidates in
``scripts/sweep_quickstart.py`` for that budget.

    jaxlab run experiments/quickstart.py                      # or: make run
    jaxlab run experiments/quickstart.py --set train.loop.steps=100 --workdir /tmp/qs   # a smoke run
    jaxlab run experiments/quickstart.py --set data.path=my_corpus/   # your own text
"""

from configs import models
from jaxlab.data import EOS_ID, PAD_ID
from jaxlab.samplers import SampleConfig
from jaxlab.train.config import ExperimentConfig, TrainConfig
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="quickstart",
        model=models.get("quickstart"),
        optim=OptimConfig(lr=3e-3, warmup_steps=110, schedule="cosine", final_lr_fraction=0.1,
                          weight_decay=0.1, clip_norm=1.0),
        train=TrainConfig(batch_size=16, seq_len=256, eval_batches=16,
                          loop=LoopConfig(steps=1100, eval_every=275, checkpoint_every=275, log_every=10)),
        sample=SampleConfig(max_new_tokens=300, temperature=0.8, top_p=0.95,
                            stop_tokens=(EOS_ID,), pad_id=PAD_ID),
        prompt="The ",
    )
