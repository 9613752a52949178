"""PEFT-layout adapters: an adapter saved by jaxlab gives the same logits in the ``peft``
library, and one saved by ``peft`` gives the same logits in jaxlab (float32, 1e-4), for LoRA,
rsLoRA and DoRA on a random small Llama (no downloads)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[torch]')")
peft = pytest.importorskip("peft", reason="peft is not installed (pip install -e '.[torch]')")

import jax  # noqa: E402

from jaxlab.interop import hf  # noqa: E402
from jaxlab.interop.peft import load_adapter, save_adapter  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.peft import AdapterError, AdapterSpec, attach, merge  # noqa: E402

TOL = 1e-4
IDS = np.array([[3, 17, 42, 5, 99, 11, 64, 2]])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random Llama saved by transformers and loaded into jaxlab."""
    folder = tmp_path_factory.mktemp("llama")
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    jcfg, params = hf.load(folder)
    return folder, jcfg, params


def hf_model(folder):
    return transformers.LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()


def jax_logits(jcfg, params):
    return np.asarray(jax.jit(transformer.apply, static_argnums=2)(params, IDS, jcfg))


@pytest.mark.parametrize("method,rslora", [("lora", False), ("lora", True), ("dora", False)])
def test_jaxlab_adapter_loads_in_peft_with_the_same_logits(base, tmp_path, method, rslora):
    folder, jcfg, params = base
    spec = AdapterSpec(method=method, targets="all", rank=4, alpha=8.0, rslora=rslora)
    frozen, trainable = attach(params, spec, jax.random.key(1))
    # random B (and magnitudes), so that the adapter changes the outputs
    trainable = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(2), x.shape), trainable)
    save_adapter(tmp_path / "adapter", trainable, spec, base_model=str(folder))
    ours = jax_logits(jcfg, merge(frozen, trainable, spec))
    model = peft.PeftModel.from_pretrained(hf_model(folder), tmp_path / "adapter").eval()
    with torch.no_grad():
        theirs = model(torch.tensor(IDS)).logits.numpy()
    assert np.abs(ours - jax_logits(jcfg, params)).max() > 1e-2  # the adapter matters
    np.testing.assert_allclose(ours, theirs, atol=TOL, rtol=TOL)
    spec2, trainable2 = load_adapter(tmp_path / "adapter")  # and jaxlab reads its own file back
    assert (spec2.method, spec2.rank, spec2.alpha, spec2.rslora) == (method, 4, 8.0, rslora)
    np.testing.assert_allclose(jax_logits(jcfg, merge(frozen, trainable2, spec2)), ours, atol=1e-6)


@pytest.mark.parametrize("use_dora", [False, True])
def test_peft_adapter_loads_in_jaxlab_with_the_same_logits(base, tmp_path, use_dora):
    folder, jcfg, params = base
    config = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                             init_lora_weights=False, use_dora=use_dora, lora_dropout=0.0)
    torch.manual_seed(3)
    model = peft.get_peft_model(hf_model(folder), config).eval()
    model.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        theirs = model(torch.tensor(IDS)).logits.numpy()
    spec, trainable = load_adapter(tmp_path / "adapter")
    assert spec.method == ("dora" if use_dora else "lora") and set(trainable["layers"]["attn"]) == {"q", "v"}
    ours = jax_logits(jcfg, merge(params, trainable, spec))
    np.testing.assert_allclose(ours, theirs, atol=TOL, rtol=TOL)


def test_settings_jaxlab_cannot_express_are_refused(base, tmp_path):
    folder, _, _ = base
    config = peft.LoraConfig(r=4, target_modules=["q_proj"], rank_pattern={"q_proj": 2})
    peft.get_peft_model(hf_model(folder), config).save_pretrained(tmp_path / "a")
    with pytest.raises(AdapterError, match="rank_pattern"):
        load_adapter(tmp_path / "a")
    with pytest.raises(AdapterError, match="not a PEFT adapter folder"):
        load_adapter(tmp_path)
