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


def test_windowed_layers_score_at_most_window_keys():
    cfg = transformer.Config(vocab_size=100, d_model=8, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=4,
                             mlp_dim=16, window=4)
    full = transformer.Config(**{**cfg.__dict__, "window": None})
    # attention terms 4 * context * H * Dh: context 4 instead of 10
    assert mfu.layer_flops_per_token(full, 10) - mfu.layer_flops_per_token(cfg, 10) == 4 * (10 - 4) * 2 * 4
    assert mfu.layer_flops_per_token(cfg, 3) == mfu.layer_flops_per_token(full, 3)


def test_blt_flops_per_byte_by_hand():
    from jaxlab.models import blt

    cfg = blt.Config(vocab_size=10, d_model=8, n_layers=1, n_heads=2, head_dim=4, mlp_dim=16, d_local=4,
                     local_heads=2, local_mlp_dim=8, encoder_layers=1, decoder_layers=1, local_window=4,
                     decoder_kv_per_patch=2, patching="static")
    # local layer (d 4, 2 heads of 2, mlp 8, context min(16, 4) = 4):
    #   2*4*2*(4+4) = 128; 2*4*8*3 = 192; 4*4*2*2 = 64 -> 384; encoder + decoder 768
    # per byte: 768 + 4*16 + 4*16 + 4*2*4 + 2*4*10 = 768 + 64 + 64 + 32 + 80 = 1008
    # latent layer at context 16/2 = 8: 2*8*4*8 = 512; 2*8*16*3 = 768; 4*8*2*4 = 256 -> 1536
    # per patch (L = 2): 4*16 + 4*2*4 + 2*4*8 + 2*8*2*4 + 4*2*16 + 1536 = 64+32+64+128+128+1536 = 1952
    assert mfu.blt_forward_flops_per_byte(cfg, 16, 2.0) == 1008 + 1952 / 2
    assert mfu.blt_train_flops_per_byte(cfg, 16, 2.0) == 3 * (1008 + 1952 / 2)
    # longer patches: fewer latent steps per byte
    assert mfu.blt_forward_flops_per_byte(cfg, 16, 4.0) < mfu.blt_forward_flops_per_byte(cfg, 16, 2.0)
    # entropy patching adds one forward of the (untrained, frozen) entropy model per byte
    ent = blt.Config(**{**cfg.__dict__, "patching": "entropy"})
    assert mfu.blt_train_flops_per_byte(ent, 16, 2.0) == (3 * (1008 + 1952 / 2)
                                                          + mfu.forward_flops_per_token(ent.entropy_model, 16))
    with pytest.raises(ValueError, match="mean_patch_len"):
        mfu.blt_forward_flops_per_byte(cfg, 16, 0.5)
