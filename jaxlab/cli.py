"""The runner: ``jaxlab run EXPERIMENT.py [--workdir DIR] [--set key=value ...]``.

An experiment file defines ``get_config()`` returning an ``ExperimentConfig`` or a dict of
named variants, and optionally ``CLAIM`` (a sentence) and ``check(results) -> (held, text)``
that decides the claim from the variants' results. Each variant trains in its own workdir
(``DIR/<variant>``; a single config trains in ``DIR``); the runner then writes ``DIR/report.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path
from types import ModuleType

from jaxlab import config as config_lib

log = logging.getLogger("jaxlab")


class ExperimentError(ValueError):
    pass


def load_experiment(path: str | Path) -> ModuleType:
    """Imports an experiment file. Its folder and the folder above (the repository root for
    ``experiments/NAME.py``) go on ``sys.path``, so it can import ``configs`` presets."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ExperimentError(f"no experiment file at {path}")
    for folder in (str(path.parent.parent), str(path.parent)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"jaxlab_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ExperimentError(f"{path} defines no get_config()")
    return module


def experiment_variants(module: ModuleType, overrides: list[str]) -> dict:
    """{variant name: resolved config}; a single config is one variant named by its ``name``."""
    from jaxlab.train.config import ExperimentConfig

    configs = module.get_config()
    single = not isinstance(configs, dict)
    if single:
        configs = {configs.name: configs}
    if not configs:
        raise ExperimentError("get_config() returned no variants")
    resolved = {}
    for name, cfg in configs.items():
        if not isinstance(cfg, ExperimentConfig):
            raise ExperimentError(f"variant {name!r} is a {type(cfg).__name__}, not an ExperimentConfig")
        resolved[name] = config_lib.apply_overrides(cfg, overrides)
    return resolved


def run_experiment(path: str | Path, workdir: str | Path | None = None, overrides: list[str] = (),
                   *, progress: bool = True) -> dict:
    """Trains every variant of the experiment; returns {variant: results}."""
    from jaxlab.train.loop import train

    module = load_experiment(path)
    variants = experiment_variants(module, list(overrides))
    workdir = Path(workdir) if workdir is not None else Path("runs") / Path(path).stem
    single = len(variants) == 1 and not isinstance(module.get_config(), dict)
    results = {}
    for name, cfg in variants.items():
        results[name] = train(cfg, workdir if single else workdir / name, progress=progress)
    verdict = module.check(results) if hasattr(module, "check") else None
    write_summary(workdir, module, results, verdict, single=single)
    return results


def write_summary(workdir: Path, module: ModuleType, results: dict, verdict, *, single: bool) -> None:
    claim = getattr(module, "CLAIM", None)
    lines = []
    if claim or verdict is not None:
        lines.append("## Claim\n")
        if claim:
            lines.append(f"> {claim}\n")
        if verdict is not None:
            held, text = verdict
            lines.append(f"**Verdict: {'held' if held else 'did not hold'}.** {text}\n")
    if single:
        if lines:
            report = workdir / "report.md"
            report.write_text(report.read_text() + "\n" + "\n".join(lines))
        return
    rows = ["| variant | train loss | val loss | val bits/byte | tokens/s |", "|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append(f"| [{name}]({name}/report.md) | {r['train_loss']:.4f} | {r['val_loss']:.4f} | "
                    f"{r['val_bpb']:.4f} | {r['tokens_per_s'] or 0:,.0f} |")
    body = [f"# {Path(module.__file__).stem}\n", "\n".join(rows) + "\n"] + lines
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "report.md").write_text("\n".join(body))
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxlab", description="jaxlab experiment runner")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train an experiment (resumes if its workdir has a run)")
    run.add_argument("experiment", help="path to an experiment .py file")
    run.add_argument("--workdir", help="output directory (default: runs/<experiment name>)")
    run.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set model.n_layers=4 (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    show = sub.add_parser("config", help="print the resolved config of an experiment")
    show.add_argument("experiment")
    show.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax._src"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from jaxlab.data import DataError
    from jaxlab.train.checkpoint import CheckpointError
    from jaxlab.train.loop import ConfigMismatchError, NonFiniteLossError

    expected = (config_lib.ConfigError, ExperimentError, DataError, ConfigMismatchError,
                NonFiniteLossError, CheckpointError)
    try:
        if args.command == "config":
            variants = experiment_variants(load_experiment(args.experiment), args.overrides)
            print(json.dumps({k: config_lib.to_dict(v) for k, v in variants.items()}, indent=2))
            return 0
        results = run_experiment(args.experiment, args.workdir, args.overrides,
                                 progress=not args.no_progress)
    except expected as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, (config_lib.ConfigError, ExperimentError)) else 1
    for name, r in results.items():
        print(f"{name}: val bits/byte {r['val_bpb']:.4f}, val loss {r['val_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
