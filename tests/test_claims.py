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
    assert module.claim_verdict(runs).outcome == "not held"
    # equal learning rates: the difference is pure noise around 0
    monkeypatch.setattr(module, "THRESHOLD", 0.0)
    runs = {arm: [module.run(module.Config(lr=0.1, noise=0.5, seed=offset + k), tmp_path, progress=False)
                  for k in range(3)] for arm, offset in (("slow", 0), ("fast", 100))}
    v = module.claim_verdict(runs)
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


def test_presets_apply_before_set_and_unknown_ones_are_refused(tmp_path, capsys):
    module = cli.load_experiment(FIXTURE)
    variants = cli.experiment_variants(module, ["steps=7"], "smoke")
    assert variants["fast"].problems == 20 and variants["fast"].steps == 7 and variants["fast"].lr == 0.3
    with pytest.raises(config_lib.ConfigError, match=r"no preset 'huge' .*presets: paper, smoke"):
        cli.experiment_variants(module, [], "huge")
    assert run(tmp_path, "--publish") == 2  # --publish needs --preset
    assert "--publish needs --preset" in capsys.readouterr().err


def test_publish_records_the_command_and_keeps_older_claim_versions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(tmp_path / "w", "--preset", "smoke", "--seeds", "2", "--publish") == 0
    dest = tmp_path / "results" / "seeded_claim" / "smoke"
    first = json.loads((dest / "results.json").read_text())
    assert first["experiment"] == "seeded_claim" and first["preset"] == "smoke" and first["claim_version"] == 1
    assert first["command"].endswith("--preset smoke --seeds 2") and first["history"] == []
    assert first["verdict"]["outcome"] == "held" and (dest / "seeds.png").exists()
    assert (dest / "fast" / "seed1" / "report.md").exists()  # each seed's report travels too
    assert "Produced by `jaxlab run" in (dest / "report.md").read_text()
    # a new claim version: the old verdict moves to the history, in the JSON and the report
    claims.publish(tmp_path / "w", dest, experiment="seeded_claim", preset="smoke", claim_version=2,
                   command="jaxlab run ...")
    second = json.loads((dest / "results.json").read_text())
    assert second["claim_version"] == 2 and second["history"][0]["claim_version"] == 1
    assert "## History" in (dest / "report.md").read_text()


def test_claims_table_reads_results_and_lists_what_is_not_run(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "alpha.py").write_text("CLAIM = 'a'\n\ndef claim_verdict(runs):\n    pass\n")
    (tmp_path / "experiments" / "beta.py").write_text("CLAIM = 'b'\n\ndef claim_verdict(runs):\n    pass\n")
    (tmp_path / "experiments" / "gamma.py").write_text("CLAIM = 'c'\n\ndef check(results):\n    pass\n")
    (tmp_path / "experiments" / "tool.py").write_text("def run(cfg, workdir, *, progress):\n    pass\n")
    dest = tmp_path / "results" / "alpha" / "paper"
    dest.mkdir(parents=True)
    verdict = {"outcome": "inconclusive", "effect": 0.02, "low": -0.01, "high": 0.05, "test": "McNemar"}
    (dest / "results.json").write_text(json.dumps({"experiment": "alpha", "preset": "paper", "seeds": 3,
                                                   "verdict": verdict}))
    table = claims.claims_table(tmp_path)
    assert "| [alpha](results/alpha/paper/report.md) | paper | 3 | inconclusive | +0.02 [-0.01, +0.05] | McNemar |" in table
    assert "| beta | paper | | not yet run at the paper preset | | |" in table and "| alpha | paper | |" not in table
    assert "| gamma | | | no three-way verdict yet | | |" in table and "tool" not in table
    start = claims.TABLE_START.format(names="beta,alpha,gamma")
    readme = f"intro\n{start}\nold\n{claims.TABLE_END}\nrest\n"
    filled = claims.readme_with_tables(readme, tmp_path)
    assert filled == f"intro\n{start}\n{claims.claims_table(tmp_path, ['beta', 'alpha', 'gamma'])}\n{claims.TABLE_END}\nrest\n"
    two = (f"{claims.TABLE_START.format(names='alpha')}\n{claims.TABLE_END}\nmiddle\n"
           f"{claims.TABLE_START.format(names='beta,gamma')}\n{claims.TABLE_END}\n")
    out = claims.readme_with_tables(two, tmp_path)
    first, second = out.split("middle")
    assert "[alpha]" in first and "beta" not in first and "| beta |" in second and "alpha" not in second
    with pytest.raises(ValueError, match="markers"):
        claims.readme_with_tables("no markers", tmp_path)
    with pytest.raises(ValueError, match=r"in no table: \['gamma'\]"):
        claims.readme_with_tables(f"{claims.TABLE_START.format(names='alpha,beta')}\n{claims.TABLE_END}", tmp_path)
    with pytest.raises(ValueError, match=r"not experiments with a CLAIM: \['tool'\]"):
        claims.readme_with_tables(f"{claims.TABLE_START.format(names='alpha,beta,gamma,tool')}\n{claims.TABLE_END}",
                                  tmp_path)


def test_readme_claims_table_agrees_with_results():
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "scripts" / "claims_table.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
