"""The encoder MLM experiment at smoke size through the runner: its report, curves, example fills
and Hugging Face folder, a workdir accepted again with more steps but not with other settings,
and the clear errors on unknown or bad settings."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "encoder_mlm.py")
SMALL = ["encoder.n_layers=1", "mlm.loop.steps=4", "mlm.loop.eval_every=2", "mlm.loop.checkpoint_every=2"]


def _run(workdir, *overrides) -> int:
    return cli.main(["run", EXPERIMENT, "--workdir", str(workdir), "--no-progress", "--preset", "smoke",
                     "--set", *SMALL, *overrides])


@pytest.mark.slow
def test_smoke_run_reports_validation_mlm_and_fills_and_may_be_extended(tmp_path):
    from jaxlab.interop import hf_encoder

    exp = cli.load_experiment(EXPERIMENT)
    assert _run(tmp_path) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/loss" in r]
    assert [r["step"] for r in val] == [2, 4]
    assert results["val_loss"] == val[-1]["val/loss"] and results["val_accuracy"] == val[-1]["val/accuracy"]
    assert 0 < results["val_loss"] < 2 * np.log(264) and results["val_masked_tokens"] > 0
    ex = results["example"]
    assert ex["masked"].count(exp.MASK_SHOWN) == ex["masked_bytes"] > 0
    assert 0 <= ex["correct_fills"] <= ex["masked_bytes"]
    report = (tmp_path / "report.md").read_text()
    assert f"{results['val_loss']:.4f}" in report and repr(ex["masked"]) in report
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf["architectures"] == ["ModernBertForMaskedLM"] and hf["mask_token_id"] == 259
    _, params, _ = hf_encoder.load(tmp_path / "hf")
    assert params["embed"]["embedding"].shape == (264, 32)

    # Run again with more steps, the workdir is accepted (the run continues from its checkpoint:
    # tests/train/test_mlm.py); a setting that changes the trajectory is refused.
    from jaxlab.train.loop import ConfigMismatchError

    cfg = cli.experiment_variants(exp, SMALL + ["mlm.loop.steps=9"], "smoke")["encoder_mlm"]
    cli._check_custom_config(cfg, tmp_path, exp.RESUMABLE_KEYS)
    assert json.loads((tmp_path / "config.json").read_text())["mlm"]["loop"]["steps"] == 9
    other = cli.experiment_variants(exp, SMALL + ["mlm.mask_prob=0.15"], "smoke")["encoder_mlm"]
    with pytest.raises(ConfigMismatchError, match=r"different settings \(mlm.mask_prob\)"):
        cli._check_custom_config(other, tmp_path, exp.RESUMABLE_KEYS)


def test_unknown_or_changed_settings_fail_clearly(tmp_path, capsys):
    assert _run(tmp_path, "mlm.mask_pro=0.2") == 2
    assert "unknown config key 'mlm.mask_pro'; did you mean 'mlm.mask_prob'?" in capsys.readouterr().err
    assert _run(tmp_path, "mlm.mask_prob=1.5") == 2
    assert "mask_prob must be in (0, 1)" in capsys.readouterr().err
    # a workdir holding a run is not resumed with settings that change its trajectory
    (tmp_path / "config.json").write_text(json.dumps({"encoder": {"d_model": 16}}))
    assert _run(tmp_path) == 1
    assert "encoder.d_model" in capsys.readouterr().err
