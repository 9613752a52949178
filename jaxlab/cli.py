"""The runner: ``jaxlab run EXPERIMENT.py [--workdir DIR] [--set key=value ...]``.

An experiment file defines:

  get_config()      a frozen dataclass config, or a dict {variant name: config}
  run(cfg, workdir, *, progress) -> dict
                    optional: trains and evaluates one variant and returns its results (JSON
                    scalars, lists, strings). Without it the config must be an
                    ``ExperimentConfig`` and the variant is trained by the LM loop
                    (:func:`jaxlab.train.loop.train`).
  CLAIM             optional: the sentence the experiment checks
  claim_verdict(runs) optional: ``{variant: [results per seed]} -> jaxlab.stats.Verdict``, the
                    three-way verdict on the claim (held / not held / inconclusive, with the
                    effect's interval); ``--seeds N`` runs each variant under N seeds
                    (:mod:`jaxlab.claims`), without it each variant's list holds one run
  check(results)    optional, older form: ``{variant: results} -> (held, text)``
  PRESETS           optional: {name: {dotted key: value}}, named settings (``smoke`` for the
                    tests, ``paper`` for the fair setting) chosen with ``--preset NAME``
  CLAIM_VERSION     optional int (default 1): bump it when the claim's code, threshold or
                    preconditions change; ``--publish`` keeps older versions' verdicts
  REPORT_KEYS       optional: result keys shown in the summary table
  RESUMABLE_KEYS    optional: config keys (or prefixes) of a run() experiment that may change
                    when its workdir is run again (e.g. its step count, to extend a run); any
                    other change is refused
  summarize(results, workdir) -> str
                    optional: markdown added to the summary report (comparison plots, tables)

Each variant runs in its own workdir (``DIR/<variant>``; a single config runs in ``DIR``); the
runner then writes ``DIR/report.md`` and ``DIR/results.json``. Overrides (``--set a.b=1``) apply
to every variant, with type checks.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    # Registered before it runs: dataclasses (with postponed annotations) look their module up.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ExperimentError(f"{path} defines no get_config()")
    return module


def experiment_variants(module: ModuleType, overrides: list[str], preset: str | None = None) -> dict:
    """{variant name: resolved config}; a single config is one variant named by its ``name``.
    A ``preset``'s overrides (``module.PRESETS[preset]``) apply first, then ``overrides``."""
    from jaxlab import claims
    from jaxlab.train.config import ExperimentConfig

    custom = hasattr(module, "run")
    configs = module.get_config()
    single = not isinstance(configs, dict)
    if single:
        configs = {configs.name: configs}
    if not configs:
        raise ExperimentError("get_config() returned no variants")
    resolved = {}
    for name, cfg in configs.items():
        if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
            raise ExperimentError(f"variant {name!r} is a {type(cfg).__name__}, not a config dataclass")
        if not custom and not isinstance(cfg, ExperimentConfig):
            raise ExperimentError(f"variant {name!r} is a {type(cfg).__name__}; without a run() "
                                  "function the experiment must return ExperimentConfig variants")
        cfg = config_lib.apply_overrides(cfg, claims.preset_overrides(module, preset))
        resolved[name] = config_lib.apply_overrides(cfg, overrides)
    return resolved


def run_experiment(path: str | Path, workdir: str | Path | None = None, overrides: list[str] = (),
                   *, progress: bool = True, seeds: int | None = None, preset: str | None = None) -> dict:
    """Runs every variant of the experiment; returns {variant: results}, or with ``seeds``
    {variant: [results of each seed]} (:mod:`jaxlab.claims`)."""
    from jaxlab.train.loop import train

    module = load_experiment(path)
    variants = experiment_variants(module, list(overrides), preset)
    workdir = Path(workdir) if workdir is not None else Path("runs") / Path(path).stem
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ExperimentError(f"--seeds must be an int >= 1, got {seeds!r}")
    single = len(variants) == 1 and not isinstance(module.get_config(), dict) and seeds is None
    run_fn = getattr(module, "run", None)

    def run_one(cfg, run_dir: Path, label: str) -> dict:
        if run_fn is None:
            return train(cfg, run_dir, progress=progress)
        run_dir.mkdir(parents=True, exist_ok=True)
        _check_custom_config(cfg, run_dir, getattr(module, "RESUMABLE_KEYS", ()))
        result = run_fn(cfg, run_dir, progress=progress)
        _write_json(run_dir / "results.json", result)
        _write_variant_report(run_dir / "report.md", label, result)
        return result

    if seeds is None:
        results = {name: run_one(cfg, workdir if single else workdir / name, name)
                   for name, cfg in variants.items()}
        runs = {name: [r] for name, r in results.items()}
    else:
        from jaxlab import claims
        runs = {name: [run_one(claims.seeded(cfg, k, module), claims.seed_dir(workdir / name, k),
                               f"{name}, seed {k}") for k in range(seeds)]
                for name, cfg in variants.items()}
        results = runs
    verdict = None
    if hasattr(module, "claim_verdict"):
        verdict = module.claim_verdict(runs)
        log.info("claim %s: %s", verdict.outcome, verdict.sentence())
    elif hasattr(module, "check") and seeds is None:
        verdict = module.check(results)
        log.info("claim %s: %s", "held" if verdict[0] else "did not hold", verdict[1])
    write_summary(workdir, module, results, verdict, single=single, custom=run_fn is not None,
                  seeds=seeds)
    return results


def _flat(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _check_custom_config(cfg, workdir: Path, resumable=()) -> None:
    """Writes the variant's config.json, or refuses to resume a workdir whose run used other
    settings (its checkpoints would continue a different experiment), except keys in
    ``resumable`` (exact or as a prefix)."""
    from jaxlab.train.loop import ConfigMismatchError

    path = workdir / "config.json"
    new = json.loads(config_lib.to_json(cfg))
    if path.exists():
        old = _flat(json.loads(path.read_text()))
        flat_new = _flat(new)
        changed = sorted(k for k in old.keys() | flat_new.keys() if old.get(k) != flat_new.get(k)
                         and not any(k == r or k.startswith(r + ".") for r in resumable))
        if changed:
            raise ConfigMismatchError(
                f"{workdir} holds a run with different settings ({', '.join(changed)}); resuming "
                "it with these would mix two experiments. Use another --workdir, or delete the old run.")
    _write_json(path, new)


def _write_json(path: Path, value) -> None:
    import jax

    if jax.process_index() == 0:
        path.write_text(json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value):
    try:
        return value.item()  # numpy and jax scalars
    except AttributeError:
        raise TypeError(f"result value {value!r} of type {type(value).__name__} is not JSON") from None


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def summary_table(results: dict, keys: list[str], *, link: bool = True) -> str:
    """A markdown table: one row per variant, one column per result key."""
    rows = ["| variant | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in results.items():
        label = f"[{name}]({name}/report.md)" if link else name
        rows.append(f"| {label} | " + " | ".join(_cell(r.get(k)) for k in keys) + " |")
    return "\n".join(rows)


def _default_keys(results: dict) -> list[str]:
    keys = []
    for r in results.values():
        for k, v in r.items():
            if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    return keys[:8]


def _write_variant_report(path: Path, name: str, results: dict) -> None:
    """A custom variant's report: its scalar results as a table, then ``results["report"]``
    (markdown the run() function may return)."""
    import jax

    if jax.process_index() != 0:
        return
    rows = ["| result | value |", "|---|---|"]
    rows += [f"| {k} | {_cell(v)} |" for k, v in results.items()
             if isinstance(v, (int, float, bool, str)) and "\n" not in str(v)]
    extra = results.get("report")
    path.write_text(f"# {name}\n\n" + "\n".join(rows) + "\n" + (f"\n{extra}\n" if extra else ""))


def write_summary(workdir: Path, module: ModuleType, results: dict, verdict, *, single: bool,
                  custom: bool = False, seeds: int | None = None) -> None:
    """``workdir/report.md`` (and ``results.json`` of a multi-variant run): the claim, the
    verdict (a :class:`jaxlab.stats.Verdict`, or a legacy ``(held, text)``), the results
    table (one row per variant and seed with ``seeds``), a per-seed plot with ``seeds``, and
    the experiment's ``summarize``."""
    import jax

    from jaxlab import claims
    from jaxlab.stats import Verdict

    if jax.process_index() != 0:
        return
    claim = getattr(module, "CLAIM", None)
    lines = []
    if claim or verdict is not None:
        lines.append("## Claim\n")
        if claim:
            lines.append(f"> {claim}\n")
        if isinstance(verdict, Verdict):
            lines.append(claims.verdict_markdown(verdict))
        elif verdict is not None:
            held, text = verdict
            lines.append(f"**Verdict: {'held' if held else 'did not hold'}.** {text}\n")
    keys = getattr(module, "REPORT_KEYS", None)
    if seeds is not None:
        keys = list(keys) if keys is not None else _default_keys(
            {f"{n}/{k}": r for n, rs in results.items() for k, r in enumerate(rs)})
        workdir.mkdir(parents=True, exist_ok=True)
        body = [f"# {Path(module.__file__).stem} ({seeds} seeds)\n",
                claims.per_seed_table(results, keys, _cell) + "\n"] + lines
        if keys and claims.plot_per_seed(results, keys[0], workdir / "seeds.png",
                                         verdict if isinstance(verdict, Verdict) else None):
            body.append("![per seed](seeds.png)\n")
        if hasattr(module, "summarize"):
            body.append(module.summarize(results, workdir))
        (workdir / "report.md").write_text("\n".join(body))
        out = {"seeds": seeds, "runs": results}
        if isinstance(verdict, Verdict):
            out["verdict"] = verdict.to_dict()
        _write_json(workdir / "results.json", out)
        return
    if keys is None:
        keys = (["train_loss", "val_loss", "val_bpb", "tokens_per_s"] if not custom
                else _default_keys(results))
    report = workdir / "report.md"
    if single:
        if hasattr(module, "summarize"):
            lines.append(module.summarize(results, workdir))
        if lines:
            report.write_text(report.read_text() + "\n" + "\n".join(lines))
        return
    body = [f"# {Path(module.__file__).stem}\n", summary_table(results, list(keys)) + "\n"] + lines
    if hasattr(module, "summarize"):
        body.append(module.summarize(results, workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(body))
    out = dict(results)
    if isinstance(verdict, Verdict):
        out = {"runs": results, "verdict": verdict.to_dict()}
    _write_json(workdir / "results.json", out)


def _publish(args) -> None:
    """``--publish``: the run's files into results/<experiment>/<preset>/ (process 0 only)."""
    import shlex

    import jax

    from jaxlab import claims

    if jax.process_index() != 0:
        return
    stem = Path(args.experiment).stem
    workdir = Path(args.workdir) if args.workdir else Path("runs") / stem
    command = ["jaxlab", "run", args.experiment, "--preset", args.preset]
    command += ["--seeds", str(args.seeds)] if args.seeds else []
    command += ["--set", *args.overrides] if args.overrides else []
    version = int(getattr(load_experiment(args.experiment), "CLAIM_VERSION", 1))
    dest = claims.publish(workdir, Path(claims.RESULTS_DIR) / stem / args.preset, experiment=stem,
                          preset=args.preset, claim_version=version, command=shlex.join(command))
    print(f"published to {dest}")


def _maybe_initialize_distributed(args) -> None:
    from jaxlab.train import distributed

    try:
        joined = distributed.initialize_from_args(args)
    except ValueError as e:
        raise ExperimentError(str(e)) from None
    if joined:
        log.info("process %d of %d, %d devices in all", *_process_info())


def _process_info():
    import jax
    return jax.process_index(), jax.process_count(), jax.device_count()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxlab", description="jaxlab experiment runner")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train an experiment (resumes if its workdir has a run)")
    run.add_argument("experiment", help="path to an experiment .py file")
    run.add_argument("--workdir", help="output directory (default: runs/<experiment name>)")
    run.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set model.n_layers=4 (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--seeds", type=int, default=None, metavar="N",
                     help="run every variant under N seeds (WORKDIR/<variant>/seed<k>/) for the "
                          "experiment's claim_verdict(runs)")
    run.add_argument("--preset", help="a named setting of the experiment (its PRESETS: smoke, paper ...), "
                                      "applied before --set")
    run.add_argument("--publish", action="store_true",
                     help="copy the finished run's report, results and plots to results/<experiment>/<preset>/ "
                          "(needs --preset; run from the repository root)")
    from jaxlab.train import distributed

    distributed.add_arguments(run)
    # Commands with parsers of their own (main() hands them their arguments); listed for --help.
    for name, text in (("convert", "convert checkpoints: hf-to-jaxlab | jaxlab-to-hf | gguf-to-jaxlab | "
                                   "jaxlab-to-gguf SRC DST"),
                       ("models", "the model registry: list | fetch NAME | path NAME"),
                       ("generate", "print a completion: MODEL --prompt TEXT [--chat]"),
                       ("eval", "evaluate a model: MODEL --task T --n N --samples K [--text FILE]"),
                       ("ttc", "test-time compute methods: MODEL --task T --methods greedy,vote,... --budget N")):
        sub.add_parser(name, add_help=False, help=text).add_argument("args", nargs=argparse.REMAINDER)
    show = sub.add_parser("config", help="print the resolved config of an experiment")
    show.add_argument("experiment")
    show.add_argument("--preset")
    show.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert"]:  # its own parser, in jaxlab.interop.convert
        from jaxlab.interop.convert import convert_main
        return convert_main(argv[1:])
    if argv[:1] == ["models"]:  # its own parser, in jaxlab.interop.models
        from jaxlab.interop.models import models_main
        return models_main(argv[1:])
    if argv[:1] == ["eval"]:  # its own parser, in jaxlab.evals.cli
        from jaxlab.evals.cli import eval_main
        return eval_main(argv[1:])
    if argv[:1] == ["ttc"]:  # its own parser, in jaxlab.ttc.cli
        from jaxlab.ttc.cli import ttc_main
        return ttc_main(argv[1:])
    if argv[:1] == ["generate"]:  # its own parser, in jaxlab.generate_cli
        from jaxlab.generate_cli import generate_main
        return generate_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax._src"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from jaxlab.data import DataError
    from jaxlab.train.checkpoint import CheckpointError
    from jaxlab.train.fit import NonFiniteLossError
    from jaxlab.train.loop import ConfigMismatchError

    expected = (config_lib.ConfigError, ExperimentError, DataError, ConfigMismatchError,
                NonFiniteLossError, CheckpointError)
    try:
        if args.command == "run":
            _maybe_initialize_distributed(args)
        if args.command == "config":
            variants = experiment_variants(load_experiment(args.experiment), args.overrides, args.preset)
            print(json.dumps({k: config_lib.to_dict(v) for k, v in variants.items()}, indent=2))
            return 0
        if args.publish and args.preset is None:
            raise ExperimentError("--publish needs --preset (results/<experiment>/<preset>/)")
        results = run_experiment(args.experiment, args.workdir, args.overrides,
                                 progress=not args.no_progress, seeds=args.seeds, preset=args.preset)
        if args.publish:
            _publish(args)
    except expected as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, (config_lib.ConfigError, ExperimentError)) else 1
    for name, r in results.items():
        if isinstance(r, list):  # one result per seed
            print(f"{name}: {len(r)} seeds")
            continue
        if r.get("val_bpb") is not None:
            print(f"{name}: val bits/byte {r['val_bpb']:.4f}, val loss {r['val_loss']:.4f}")
        else:
            print(f"{name}: " + ", ".join(f"{k} {_cell(v)}" for k, v in r.items()
                                         if isinstance(v, (int, float)) and not isinstance(v, bool)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
