"""The metric writers: metrics.jsonl and TensorBoard events, without loading PyTorch."""

import json
import subprocess
import sys
from importlib.util import find_spec

import pytest

SCRIPT = """
import sys
from jaxlab.train.metrics import MetricWriter, read_jsonl
w = MetricWriter(sys.argv[1])
w.write(1, {"loss": 2.5, "bad": float("nan")}, prefix="train/")
w.write_text(1, "sample", "hello")
w.close()
import json
print(json.dumps({"torch": "torch" in sys.modules, "records": read_jsonl(sys.argv[1] + "/metrics.jsonl")}))
"""


@pytest.mark.skipif(find_spec("torch") is None, reason="only meaningful where PyTorch is installed")
def test_tensorboard_events_are_written_without_importing_torch(tmp_path):
    out = json.loads(subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                                    text=True, check=True).stdout)
    assert out["torch"] is False, "writing metrics imported PyTorch"
    assert out["records"] == [{"step": 1, "train/loss": 2.5, "train/bad": "nan"}]
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
