"""Super weights (Yu et al. 2024, "The Super Weight in Large Language Models").

The super weight is found data-free (jaxlab.analysis.lens.find_super_weight) from one forward
pass of the paper's probe "Summer is hot. Winter is": in the layer whose MLP output has the
largest |value|, at that spike's token and output channel d*, the input channel f* with the
largest |hidden| gives W_down[f*, d*]. Three models are then scored on held-out rows of the
embedded documentation (jaxlab.data.corpus.sample_token_rows): the original, the super weight
set to 0, and the ``k_others`` = 1,000 largest-|w| other down-projection weights set to 0.

Claim (fixed before any run, version 1): zeroing the super weight raises the held-out loss
more than zeroing the 1,000 largest other weights. Effect: the mean over seeds and rows of
loss(super zeroed) - loss(1,000 others zeroed), nats per token; held when its 95% interval
(nested paired bootstrap over seeds x rows) lies above 0. Preconditions: the model predicts
text (loss below log V); the spike is an outlier (the largest |MLP output| is at least 10x the
median over layers of each layer's largest |MLP output|), so there is a super weight to zero.

Reported beside it: the probe's next-token probability of " cold" under each model, and
block-wise round-to-nearest quantization of every W_down (int4 and int3, several block sizes)
with and without holding out the super weight (held-out loss of each).

    jaxlab run experiments/super_weight.py --preset smoke --seeds 2        # a tiny random model with a planted super weight
    jaxlab run experiments/super_weight.py --preset paper --seeds 3 --publish   # SmolLM2-135M-Instruct; 55 min on 2 shared, loaded cores
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import stats
from jaxlab.analysis import lens
from jaxlab.data.corpus import sample_token_rows

CLAIM = ("Zeroing the single super weight raises held-out loss more than zeroing the 1,000 "
         "largest-magnitude other down-projection weights.")
CLAIM_VERSION = 1
PROBE = "Summer is hot. Winter is"
PROBE_ANSWER = " cold"
MIN_SPIKE_RATIO = 10.0
REPORT_KEYS = ["base_loss", "super_zeroed_loss", "others_zeroed_loss", "spike_ratio"]
PRESETS = {
    "smoke": {"model": "tiny-planted", "n_sequences": 4, "seq_len": 32, "k_others": 20, "blocks": (16, 64)},
    "paper": {"model": "smollm2-135m-instruct", "n_sequences": 16, "seq_len": 256, "k_others": 1000,
              "blocks": (64, 192, 576)},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "super_weight"
    model: str = "smollm2-135m-instruct"  # a name or path load_model takes, or "tiny-planted"
    n_sequences: int = 16
    seq_len: int = 256
    k_others: int = 1000
    bits: tuple[int, ...] = (4, 3)
    blocks: tuple[int, ...] = (64, 192, 576)   # RTN block sizes along d_model (must divide it)
    seed: int = 0


def get_config():
    return Config()


def _model(cfg: Config):
    """``(model_cfg, params, tokenizer)``; "tiny-planted" is a random byte model with a super
    weight planted in layer 1 (a large W_down entry fed by an amplified hidden unit)."""
    from jaxlab.models import transformer

    if cfg.model != "tiny-planted":
        from jaxlab.interop.models import load_model
        return load_model(cfg.model)
    from jaxlab.data import ByteTokenizer

    mcfg = transformer.Config(vocab_size=259, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=16,
                              mlp_dim=128)
    params = lens.set_down_weight(transformer.init(mcfg, jax.random.key(0)), 1, 7, 3, 40.0)
    up = params["layers"]["mlp"]["up"]["kernel"].at[1, :, 7].multiply(20.0)
    mlp = {**params["layers"]["mlp"], "up": {**params["layers"]["mlp"]["up"], "kernel": up}}
    return mcfg, {**params, "layers": {**params["layers"], "mlp": mlp}}, ByteTokenizer()


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    from jaxlab.models import transformer

    mcfg, params, tokenizer = _model(cfg)
    bad = [b for b in cfg.blocks if mcfg.d_model % b]
    if bad:
        raise ValueError(f"blocks {bad} do not divide d_model={mcfg.d_model}")
    rows = jnp.asarray(sample_token_rows(tokenizer, cfg.n_sequences, cfg.seq_len, cfg.seed))
    apply = jax.jit(transformer.apply, static_argnums=2)

    def row_losses(p) -> list[float]:
        logp = jax.nn.log_softmax(apply(p, rows[:, :-1], mcfg).astype(jnp.float32), -1)
        return np.asarray(-jnp.take_along_axis(logp, rows[:, 1:, None], -1)[..., 0].mean(-1)).tolist()

    probe = jnp.asarray([tokenizer.encode(PROBE)], jnp.int32)
    answer = tokenizer.encode(PROBE_ANSWER)[0]

    def probe_prob(p) -> float:
        return float(jax.nn.softmax(apply(p, probe, mcfg)[0, -1].astype(jnp.float32))[answer])

    found = lens.find_super_weight(params, mcfg, probe)
    _, seen = transformer.apply(params, probe, mcfg, capture=("mlp_out",))
    layer_max = np.abs(np.asarray(seen["mlp_out"], np.float32)).reshape(mcfg.n_layers, -1).max(-1)
    spike_ratio = float(layer_max.max() / np.median(layer_max))
    where = (found["layer"], found["row"], found["col"])
    arms = {"base": params, "super_zeroed": lens.set_down_weight(params, *where, 0.0),
            "others_zeroed": lens.zero_largest_down_weights(params, cfg.k_others, exclude=[where])}
    quant = [(b, blk, held) for b in cfg.bits for blk in cfg.blocks for held in (False, True)]
    steps = list(arms) + quant
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="models", unit="model")
    losses, probes, rtn = {}, {}, []
    for step in steps:
        if isinstance(step, str):
            losses[step] = row_losses(arms[step])
            probes[step] = probe_prob(arms[step])
        else:
            bits, block, held = step
            q = lens.rtn_quantize_down(params, bits, block, keep=[where] if held else [])
            rtn.append({"bits": bits, "block": block, "super_weight_held_out": held,
                        "loss": float(np.mean(row_losses(q)))})
    _plot(losses, rtn, workdir)
    return {"super_weight": found, "spike_ratio": spike_ratio, "layer_max": layer_max.tolist(),
            "row_losses": losses, "probe_probability": probes, "rtn": rtn,
            "log_vocab": math.log(mcfg.vocab_size),
            **{f"{k}_loss": float(np.mean(v)) for k, v in losses.items()},
            "report": (f"Super weight: layer {found['layer']}, W_down[{found['row']}, {found['col']}] = "
                       f"{found['value']:.4g}; spike {found['spike']:.4g} ({spike_ratio:.1f}x the median layer "
                       f"maximum). P('{PROBE_ANSWER}' | '{PROBE}'): "
                       + ", ".join(f"{k} {v:.3g}" for k, v in probes.items())
                       + "\n\n![losses and RTN quantization](super_weight.png)")}


def _plot(losses: dict, rtn: list[dict], workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(losses)
    a.bar(range(len(names)), [np.mean(losses[k]) for k in names])
    a.set_xticks(range(len(names)), [k.replace("_", " ") for k in names])
    a.set_ylabel("held-out loss (nats / token)")
    a.set_yscale("log")
    a.set_title("zeroing one weight vs many")
    for held, style in ((False, "--"), (True, "-")):
        for bits in sorted({r["bits"] for r in rtn}):
            sel = [r for r in rtn if r["bits"] == bits and r["super_weight_held_out"] == held]
            b.plot([r["block"] for r in sel], [r["loss"] for r in sel], style, marker="o",
                   label=f"int{bits}" + (", super weight held out" if held else ""))
    b.axhline(np.mean(losses["base"]), color="grey", linestyle=":", label="unquantized")
    b.set_xscale("log", base=2)
    b.set_xlabel("RTN block size")
    b.set_ylabel("held-out loss")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / "super_weight.png", dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    sup = np.array([run["row_losses"]["super_zeroed"] for run in per_seed])
    others = np.array([run["row_losses"]["others_zeroed"] for run in per_seed])
    r = stats.paired_bootstrap_interval(sup, others)
    worst = max(run["base_loss"] for run in per_seed)
    ratio = min(run["spike_ratio"] for run in per_seed)
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of loss(super zeroed) - loss(others zeroed) over {r['seeds']} seeds x "
             f"{r['problems']} rows",
        preconditions=[("the model predicts text", worst < per_seed[0]["log_vocab"],
                        f"loss {worst:.3f} vs uniform {per_seed[0]['log_vocab']:.3f}"),
                       ("the spike is an outlier", ratio >= MIN_SPIKE_RATIO,
                        f"largest |MLP output| / median layer maximum {ratio:.1f} (needs >= {MIN_SPIKE_RATIO})")])
