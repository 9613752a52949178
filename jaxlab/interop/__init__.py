"""Checkpoints in and out of other ecosystems.

``hf``: Hugging Face model folders (config.json + safetensors) of the Llama, Mistral, Qwen2 and
Qwen3 families <-> :mod:`jaxlab.models.transformer`; ``tokenizer``: a folder's
``tokenizer.json`` through the ``tokenizers`` package; ``convert``: the ``jaxlab convert``
command and jaxlab's own checkpoint format (config JSON + orbax params).

Weights are read and written as safetensors only: nothing here ever unpickles.
"""
