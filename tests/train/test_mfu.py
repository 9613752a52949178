import pytest

from jaxlab.models import transformer
from jaxlab.train import mfu


def test_flops_per_token_by_hand():
    cfg = transformer.Config(vocab_size=100, d_model=8, n_layers=2, n_heads=2, n_kv_heads=1,
                             head_dim=4, mlp_dim=16, mlp_type="swiglu")
    # per layer: q,k,v,o = 2*8*4*(2*2 + 2*1) = 384; mlp = 2*8*16*3 = 768; attention at T=10:
    # 4*10*2*4 = 320 -> 1472; two layers 2944; unembedding 2*8*100 = 1600.
    assert mfu.forward_flops_per_token(cfg, 10) == 2944 + 1600
    assert mfu.train_flops_per_token(cfg, 10) == 3 * 4544
    # 1000 tokens/s on a 13,632,000 FLOP/s device is 100% utilisation.
    assert mfu.mfu(1000.0, cfg, 10, 3 * 4544 * 1000.0) == pytest.approx(1.0)
    # every gated MLP has three [D, F] matrices; FAN has periodic [8, 4], plain [8, 8] and
    # down [16, 8]: 2 * 224 = 448 per layer
    exact = transformer.Config(**{**cfg.__dict__, "mlp_type": "geglu_exact"})
    assert mfu.forward_flops_per_token(exact, 10) == 2944 + 1600
    fan = transformer.Config(**{**cfg.__dict__, "mlp_type": "fan"})
    assert mfu.forward_flops_per_token(fan, 10) == 2 * (384 + 448 + 320) + 1600


def test_peak_lookup_prefers_the_most_specific_name():
    assert mfu.peak_flops("NVIDIA H100 PCIe") == 756.0e12
    assert mfu.peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert mfu.peak_flops("NVIDIA H200") == 989.4e12
    assert mfu.peak_flops("cpu") is None
