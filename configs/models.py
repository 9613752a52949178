"""Model presets by name. Byte-level models use ``vocab_size=264``: the 259 ids of
``jaxlab.data.ByteTokenizer`` rounded up to a multiple of 8. Small models unroll their layer
scan fully (``scan_unroll = n_layers``): on CPU that is 5-10% faster per step, for a longer
compile."""

from jaxlab.models import transformer

BYTE_VOCAB = 264

PRESETS = {
    # The quickstart model: the lowest validation bits per byte after ~4 minutes of training
    # on 2 CPU cores among the candidates of scripts/sweep_quickstart.py.
    "quickstart": transformer.Config(vocab_size=BYTE_VOCAB, d_model=128, n_layers=3, n_heads=2,
                                     n_kv_heads=2, head_dim=64, mlp_dim=384, scan_unroll=3),
    # About 25M parameters (the benchmark's second model).
    "25m": transformer.Config(vocab_size=BYTE_VOCAB, d_model=512, n_layers=8, n_heads=8,
                              n_kv_heads=8, head_dim=64, mlp_dim=1344, scan_unroll=8),
    # About 350M parameters with a 32K vocabulary: the model of the GPU utilisation (MFU)
    # benchmark, at sequence length 2048 in bf16 (scripts/bench_train.py --mfu).
    "350m": transformer.Config(vocab_size=32768, d_model=1024, n_layers=24, n_heads=16,
                               n_kv_heads=16, head_dim=64, mlp_dim=2560, tie_embeddings=False,
                               compute_dtype="bfloat16", remat="dots"),
}


def get(name: str) -> transformer.Config:
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; presets: {sorted(PRESETS)}")
    return PRESETS[name]
