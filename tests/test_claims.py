"""``jaxlab run --seeds``: per-seed workdirs, a three-way verdict over seeds, reports, resume."""

import dataclasses
import json
from pathlib import Path

import pytest

from jaxlab import claims, cli
from jaxlab import config as config_lib

FIXTURE = str(Path(__file__).parent / "fixtures" / "seeded_claim.py")


def run(workdir, *args) -> int:
    return cli.main(["run", FIXTURE, "--workdir", str(workdir), "--no-progress", *args])


def test_seeds_run_each_variant_in_its_own_dir_and_decide(tmp_path):
    assert run(tmp_path, "--seeds", "3") == 0
    for variant in ("slow", "fast"):
        for k in range(3):
            config = json.loads((tmp_path / variant / f"seed{k}" / "config.json").read_text())
            assert config["seed"] == k  # seed k adds k to the seed field
            assert (tmp_path / variant / f"seed{k}" / "results.json").exists()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["seeds"] == 3 and len(results["runs"]["fast"]) == 3
    # seeds differ (the noise), problems are shared
    assert len({r["mean_distance"] for r in results["runs"]["slow"]}) == 3
    v = results["verdict"]
    assert v["outcome"] == "held" and v["low"] > 0 and v["low"] <= v["effect"] <= v["high"]
    assert "3 seeds x 50 problems" in v["test"]
    report = (tmp_path / "report.md").read_text()
    assert "**Verdict: held.**" in report and "| runs finite | yes |" in report
    assert report.count("| [fast](fast/seed") == 3
    assert (tmp_path / "seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # running again resumes the same settings (refusing would mean a changed config)
    assert run(tmp_path, "--seeds", "3") == 0


def test_threshold_out_of_reach_is_not_held_and_noise_is_inconclusive(tmp_path, monkeypatch):
    module = cli.load_experiment(FIXTURE)
    monkeypatch.setattr(module, "THRESHOLD", 10.0)
    runs = cli.run_experiment(FIXTURE, tmp_path / "a", seeds=2, progress=False)
    assert module.verdict(runs).outcome == "not held"
    # equal learning rates: the difference is pure noise around 0
    monkeypatch.setattr(module, "THRESHOLD", 0.0)
    runs = {arm: [module.run(module.Config(lr=0.1, noise=0.5, seed=offset + k), tmp_path, progress=False)
                  for k in range(3)] for arm, offset in (("slow", 0), ("fast", 100))}
    v = module.verdict(runs)
    assert v.outcome == "inconclusive" and v.low < 0 < v.high


def test_seed_keys_and_errors():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        seed: int = 5

    @dataclasses.dataclass(frozen=True)
    class Outer:
        seed: int = 1
        task: Inner = Inner()
        lr: float = 0.1

    assert claims.seed_keys(Outer()) == ["seed", "task.seed"]
    assert claims.seeded(Outer(), 2) == Outer(seed=3, task=Inner(seed=7))

    class Only:
        SEED_KEYS = ("task.seed",)
    assert claims.seeded(Outer(), 2, Only) == Outer(seed=1, task=Inner(seed=7))

    @dataclasses.dataclass(frozen=True)
    class NoSeed:
        lr: float = 0.1
    with pytest.raises(config_lib.ConfigError, match="no field named 'seed'"):
        claims.seed_keys(NoSeed())
    with pytest.raises(cli.ExperimentError, match="--seeds must be an int >= 1"):
        cli.run_experiment(FIXTURE, "/nonexistent", seeds=0)
