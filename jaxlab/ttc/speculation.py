"""Speculative decoding measured against plain greedy decoding, prompt by prompt, at batch 1.

For each prompt every method decodes the same greedy continuation budget; per method and prompt
the rows record

    tokens          emitted tokens (up to a stop token or ``max_new_tokens``)
    target_calls    forward passes of the target (plain greedy: one per token)
    draft_calls     forward passes of the draft
    seconds         wall time of the call (after warm-up calls that compile every shape)
    tokens_per_call tokens / target_calls
    agreement       share of the target's greedy tokens reproduced at the same positions
    identical       the output equals the target's greedy output

The plain side is :func:`jaxlab.samplers.generate` with the KV cache; the speculative side
:func:`jaxlab.samplers.speculative.speculative_generate` under each named
:class:`~jaxlab.samplers.speculative.SpeculativeConfig`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxlab.samplers import SampleConfig, generate
from jaxlab.samplers.generate import prompt_bucket
from jaxlab.samplers.speculative import LookupDraft, SpeculativeConfig, speculative_generate, warm_up


@dataclasses.dataclass(frozen=True)
class ComparisonConfig:
    """The settings of a speculative-decoding experiment (``experiments/speculative_*.py``):
    target, task, draft (:func:`build_draft`) and the methods' parameters."""
    name: str = "speculation"
    model: str = "smollm2-135m-instruct"   # a load_model spec or "tiny-random"
    task: str = "doc_extract"
    difficulty: tuple[int, int] = (1, 3)
    n_train: int = 48                      # problems whose target answers distil the draft
    n_test: int = 12                       # held-out problems decoded by every method
    max_new_tokens: int = 48
    draft_layers: int = 8                  # the target's layer count or more: an unpruned copy
    draft_vocab: int = 4096                # tokens of the draft's head; 0: the full head
    distill_steps: int = 40
    distill_batch: int = 4
    distill_seq_len: int = 512
    distill_lr: float = 3e-4
    gamma: int = 4                         # fixed draft length
    svip_gamma: int = 8                    # SVIP's most draft tokens per round
    svip_c: float = 0.5
    svip_min_accept: float = 0.5
    bild_gamma: int = 8                    # BiLD's most draft tokens per round
    bild_fallback: float = 0.5
    bild_rollback: float = 2.0
    lookup_gamma: int = 8                  # prompt lookup's most draft tokens per round
    lookup_ngram: int = 3
    draft_from: str = ""                   # a folder of earlier runs whose draft to reuse (build_draft)
    seed: int = 0

    def __post_init__(self):
        if self.n_test < 2 or self.n_train < 1:
            raise ValueError(f"need n_test >= 2 and n_train >= 1, got {self.n_test}, {self.n_train}")
        if self.draft_layers < 1 or self.draft_vocab < 0 or self.distill_steps < 1:
            raise ValueError(f"need draft_layers >= 1, draft_vocab >= 0, distill_steps >= 1, got "
                             f"{self.draft_layers}, {self.draft_vocab}, {self.distill_steps}")

    def specs(self) -> dict[str, tuple[SpeculativeConfig, LookupDraft | None]]:
        """Every speculative method: (config, its draft: None for the model draft, or a
        :class:`LookupDraft`): fixed gamma, SVIP and BiLD with the model draft, prompt lookup."""
        return {"fixed": (SpeculativeConfig(gamma=self.gamma), None),
                "svip": (SpeculativeConfig(gamma=self.svip_gamma, length="svip", svip_c=self.svip_c,
                                           svip_min_accept=self.svip_min_accept), None),
                "bild": (SpeculativeConfig(gamma=self.bild_gamma, length="bild", fallback=self.bild_fallback,
                                           accept="bild", rollback=self.bild_rollback), None),
                "lookup": (SpeculativeConfig(gamma=self.lookup_gamma), LookupDraft(max_ngram=self.lookup_ngram))}


# the smoke preset of the speculation experiments: a tiny random byte model and its unpruned copy
# (short drafts: each draft length 0..gamma is a compiled verification shape)
SMOKE = {"model": "tiny-random", "task": "instructed_arithmetic", "difficulty": (1, 1), "n_train": 8, "n_test": 2,
         "max_new_tokens": 8, "draft_layers": 1, "draft_vocab": 64, "distill_steps": 2, "distill_batch": 2,
         "distill_seq_len": 128, "gamma": 2, "svip_gamma": 2, "bild_gamma": 2, "lookup_gamma": 2}

# the settings that determine a draft (and the problems): a draft is reused only where all match
DRAFT_KEYS = ("model", "task", "difficulty", "n_train", "n_test", "max_new_tokens", "draft_layers", "draft_vocab",
              "distill_steps", "distill_batch", "distill_seq_len", "distill_lr", "seed")


def draft_settings(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in
            ((k, getattr(cfg, k)) for k in DRAFT_KEYS)}


def find_draft(root, settings: dict):
    """The run folder under ``root`` (any depth) holding a finished ``draft/`` whose
    ``draft_log.json`` records exactly ``settings``; FileNotFoundError naming what was looked
    for when none does."""
    import json
    from pathlib import Path

    for log_path in sorted(Path(root).glob("**/draft_log.json")):
        try:
            saved = json.loads(log_path.read_text()).get("settings")
        except ValueError:
            continue
        if saved == settings and (log_path.parent / "draft" / "jaxlab_model.json").is_file():
            return log_path.parent
    raise FileNotFoundError(f"no finished draft under {root} was made with {settings}")


def agreement(tokens: Sequence[int], reference: Sequence[int]) -> float:
    """The share of ``reference`` positions where ``tokens`` holds the same token (a missing
    position disagrees); 1.0 for an empty reference."""
    if not len(reference):
        return 1.0
    same = sum(1 for i, t in enumerate(reference) if i < len(tokens) and int(tokens[i]) == int(t))
    return same / len(reference)


def greedy_tokens(params, cfg, prompt: Sequence[int], *, max_new_tokens: int, stop_tokens=()) -> list[int]:
    """The target's greedy continuation of one prompt (stop token included)."""
    tokens = jnp.asarray([list(prompt)], jnp.int32)
    out = generate(params, cfg, tokens, jnp.ones_like(tokens), jax.random.key(0),
                   SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0, stop_tokens=tuple(stop_tokens)))
    return [int(t) for t in np.asarray(out.tokens[0, :int(out.lengths[0])])]


def compare(target: tuple, draft: tuple, prompts: Sequence[Sequence[int]],
            specs: Mapping[str, tuple[SpeculativeConfig, LookupDraft | None]], *, max_new_tokens: int,
            stop_tokens=(), draft_vocab=None, progress: bool = True) -> dict:
    """``{"greedy": [row per prompt], name: [row per prompt] ...}`` (module docstring) for the
    target ``(cfg, params)`` and each ``(spec, lookup)`` (its ``max_new_tokens`` replaced by
    ``max_new_tokens``): drafted by ``draft = (cfg, params)`` when ``lookup`` is None, by the
    :class:`LookupDraft` otherwise."""
    if not prompts:
        raise ValueError("compare needs at least one prompt")
    t_cfg, t_params = target
    d_cfg, d_params = draft
    specs = {name: (dataclasses.replace(spec, max_new_tokens=max_new_tokens), lookup)
             for name, (spec, lookup) in specs.items()}

    def plain(prompt):
        return {"tokens": greedy_tokens(t_params, t_cfg, prompt, max_new_tokens=max_new_tokens,
                                        stop_tokens=stop_tokens)}

    def spec_run(spec, lookup):
        def run(prompt):
            if lookup is not None:
                out = speculative_generate(t_params, t_cfg, None, lookup, [prompt], spec=spec, stop_tokens=stop_tokens)
            else:
                out = speculative_generate(t_params, t_cfg, d_params, d_cfg, [prompt], spec=spec,
                                           stop_tokens=stop_tokens, draft_vocab=draft_vocab)
            return {"tokens": out["tokens"][0], "target_calls": out["target_calls"],
                    "draft_calls": out["draft_calls"]}
        return run

    methods = {"greedy": plain, **{name: spec_run(spec, lookup) for name, (spec, lookup) in specs.items()}}
    # warm-up, so the timed calls compile nothing: one call of each method per length bucket
    # (plain decoding buckets the prompt, speculation the prompt but its last token), and every
    # verification shape a round can take (how many tokens it drafts depends on the data)
    reps = {}
    for prompt in prompts:
        reps.setdefault((prompt_bucket(len(prompt)), prompt_bucket(max(len(prompt) - 1, 1))), list(prompt))
    for rep in reps.values():
        for run in methods.values():
            run(rep)
        for spec, lookup in specs.values():
            warm_up(t_params, t_cfg, d_params if lookup is None else None, d_cfg if lookup is None else lookup, 1,
                    len(rep), spec=spec, draft_vocab=draft_vocab if lookup is None else None)
    rows = {name: [] for name in methods}
    for prompt in tqdm(prompts, desc="speculation", disable=not progress):
        reference = None
        for name, run in methods.items():
            start = time.perf_counter()
            out = run(list(prompt))
            seconds = time.perf_counter() - start
            tokens = out["tokens"]
            if reference is None:
                reference = tokens
            calls = out.get("target_calls", len(tokens))
            rows[name].append({"tokens": len(tokens), "target_calls": calls, "draft_calls": out.get("draft_calls", 0),
                               "seconds": seconds, "tokens_per_call": len(tokens) / max(calls, 1),
                               "agreement": agreement(tokens, reference), "identical": tokens == reference})
    return rows


def summary(rows: Mapping[str, Sequence[dict]]) -> dict:
    """Per method: totals and means over prompts, and the speed-up against greedy
    (total greedy seconds / total seconds of the method)."""
    base = sum(r["seconds"] for r in rows["greedy"])
    out = {}
    for name, per_prompt in rows.items():
        tokens = sum(r["tokens"] for r in per_prompt)
        seconds = sum(r["seconds"] for r in per_prompt)
        out[name] = {"tokens": tokens, "target_calls": sum(r["target_calls"] for r in per_prompt),
                     "draft_calls": sum(r["draft_calls"] for r in per_prompt), "seconds": seconds,
                     "tokens_per_s": tokens / seconds if seconds else float("nan"),
                     "tokens_per_call": tokens / max(1, sum(r["target_calls"] for r in per_prompt)),
                     "agreement": float(np.mean([r["agreement"] for r in per_prompt])),
                     "identical": float(np.mean([r["identical"] for r in per_prompt])),
                     "speedup": base / seconds if seconds else float("nan")}
    return out


def markdown_table(summary_: Mapping[str, dict]) -> str:
    lines = ["| method | tokens | target calls | tokens per target call | draft calls | tokens/s | speed-up vs greedy "
             "| agreement with greedy | identical outputs |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary_.items():
        lines.append(f"| {name} | {s['tokens']} | {s['target_calls']} | {s['tokens_per_call']:.2f} | {s['draft_calls']} "
                     f"| {s['tokens_per_s']:.1f} | {s['speedup']:.2f}x | {s['agreement']:.3f} | {s['identical']:.0%} |")
    return "\n".join(lines) + "\n"


def build_draft(cfg, workdir, *, progress: bool = True) -> dict:
    """The draft of an experiment config (fields: model, task, difficulty, n_train, seed,
    max_new_tokens, draft_layers, draft_vocab, distill_steps, distill_batch, distill_seq_len,
    distill_lr), made once in ``workdir/draft`` (:mod:`jaxlab.samplers.draft`): the target
    pruned to ``draft_layers``, distilled on its own greedy responses to ``n_train`` training
    problems, its head over the ``draft_vocab`` most frequent tokens of those prompts and
    responses (0: the full head). A finished draft folder is loaded, not rebuilt; with
    ``cfg.draft_from`` the draft of an earlier run under that folder made with the same
    :data:`DRAFT_KEYS` settings is loaded instead (:func:`find_draft`), so two experiments on
    one draft distil it once.

    Returns ``{"target": (cfg, params), "draft": (cfg, params), "vocab", "tokenizer", "stops",
    "test_prompts", "distill": [{step, kl, agree}], "pruned_from"}``."""
    import json
    from pathlib import Path

    from jaxlab import tasks as tasks_lib
    from jaxlab.data.chat import encode_prompt
    from jaxlab.interop.models import load_experiment_model
    from jaxlab.samplers import draft as draft_lib
    from jaxlab.samplers import pad_prompts

    workdir = Path(workdir)
    t_cfg, t_params, tokenizer = load_experiment_model(cfg.model, cfg.seed)
    task = tasks_lib.get(cfg.task, train_difficulty=tuple(cfg.difficulty))
    split = task.splits(cfg.seed, n_train=cfg.n_train, n_test=cfg.n_test, n_ood=0)
    encode = lambda e: [int(t) for t in encode_prompt([{"role": "user", "content": e.prompt}], tokenizer)]  # noqa: E731
    train_prompts = [encode(e) for e in split["train"]]
    test_prompts = [encode(e) for e in split["test"]]
    stops = tuple(tokenizer.eos_ids)
    settings = draft_settings(cfg)
    home = find_draft(cfg.draft_from, settings) if cfg.draft_from else workdir
    folder, log_path = home / "draft", home / "draft_log.json"
    if (folder / "jaxlab_model.json").is_file() and log_path.is_file():
        d_cfg, d_params, vocab = draft_lib.load_draft(folder)
        log = json.loads(log_path.read_text())
    else:
        responses = []
        sample_cfg = SampleConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0, stop_tokens=stops,
                                  pad_id=tokenizer.pad_id)
        for i in tqdm(range(0, len(train_prompts), 8), desc="target responses", disable=not progress):
            tokens_BT, mask_BT = pad_prompts(train_prompts[i:i + 8], tokenizer.pad_id)
            out = generate(t_params, t_cfg, tokens_BT, mask_BT, jax.random.key(0), sample_cfg)
            responses += [[int(t) for t in np.asarray(out.tokens[b, :int(out.lengths[b])])]
                          for b in range(tokens_BT.shape[0])]
        records = [{"prompt": e.prompt, "response": tokenizer.decode(np.asarray([t for t in r if t not in stops]))}
                   for e, r in zip(split["train"], responses)]
        if cfg.draft_layers >= t_cfg.n_layers:  # an unpruned copy (a one-layer stand-in model)
            d_cfg, d_params, first = t_cfg, t_params, None
        else:
            d_cfg, d_params, first = draft_lib.prune_draft(t_params, t_cfg, train_prompts[:16], cfg.draft_layers)
        fit = draft_lib.distill_draft(workdir / "distill", (t_cfg, t_params), (d_cfg, d_params), records,
                                      tokenizer=tokenizer, steps=cfg.distill_steps, batch_size=cfg.distill_batch,
                                      seq_len=cfg.distill_seq_len, lr=cfg.distill_lr, seed=cfg.seed, progress=progress)
        vocab = None
        if cfg.draft_vocab:
            vocab = draft_lib.frequent_tokens(train_prompts + responses, cfg.draft_vocab, always=stops)
        draft_lib.save_draft(folder, d_cfg, fit.params, vocab)
        log = {"settings": settings, "pruned_from": first, "distill": [{"step": r["step"], "kl": r["train/kl"], "agree": r["train/agree"]}
                                                 for r in fit.records if "train/kl" in r]}
        log_path.write_text(json.dumps(log, indent=1) + "\n")
        d_cfg, d_params, vocab = draft_lib.load_draft(folder)
    return {"target": (t_cfg, t_params), "draft": (d_cfg, d_params), "vocab": vocab, "tokenizer": tokenizer,
            "stops": stops, "test_prompts": test_prompts, "draft_folder": str(folder), **log}


def run_comparison(cfg: ComparisonConfig, workdir, methods: Sequence[str], *, progress: bool = True) -> dict:
    """An experiment's run: :func:`build_draft`, then :func:`compare` of greedy decoding and
    ``methods`` (names of ``cfg.specs()``) on the held-out prompts; a table (``report``) and
    the per-prompt ``rows`` and ``summary`` as results."""
    known = cfg.specs()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown speculative methods {unknown}; known: {sorted(known)}")
    specs = {m: known[m] for m in methods}
    built = build_draft(cfg, workdir, progress=progress)
    rows = compare(built["target"], built["draft"], built["test_prompts"], specs, max_new_tokens=cfg.max_new_tokens,
                   stop_tokens=built["stops"], draft_vocab=built["vocab"], progress=progress)
    summ = summary(rows)
    d_cfg = built["draft"][0]
    head = "full head" if built["vocab"] is None else f"head over {len(built['vocab'])} tokens"
    distill = built["distill"]
    about = f"Draft: {d_cfg.n_layers} of the target's {built['target'][0].n_layers} layers"
    if built["pruned_from"] is not None:
        about += f" (a block dropped from layer {built['pruned_from']})"
    about += f", {head}"
    if distill:
        about += (f"; distillation KL {distill[0]['kl']:.3f} -> {distill[-1]['kl']:.3f}, greedy agreement with "
                  f"the target {distill[0]['agree']:.3f} -> {distill[-1]['agree']:.3f}")
    lines = [about + ".", "", markdown_table(summ)]
    out = {"rows": rows, "summary": summ, "report": "\n".join(lines), "draft_folder": built["draft_folder"],
           "settings": {name: dataclasses.asdict(spec) | ({} if lookup is None else {"lookup": dataclasses.asdict(lookup)})
                        for name, (spec, lookup) in specs.items()}
           | {"gamma": cfg.gamma}, "distill": distill}
    for name, s in summ.items():
        out[f"{name}_tokens_per_call"] = s["tokens_per_call"]
        out[f"{name}_speedup"] = s["speedup"]
    return out
