"""Checkpoints in and out of other ecosystems.

``hf``: Hugging Face model folders (config.json + safetensors) of the Llama, Mistral, Qwen2 and
Qwen3 families <-> :mod:`jaxlab.models.transformer`; ``gguf``: llama.cpp GGUF files of the
llama architecture (quantized blocks dequantized, tokenizer rebuilt from the metadata) in and
out; ``tokenizer``: a folder's ``tokenizer.json`` through the ``tokenizers`` package;
``convert``: the ``jaxlab convert`` command and jaxlab's own checkpoint format (config JSON +
orbax params); ``models``: the registry of known models, the local model cache (``jaxlab
models``) and ``load_model(spec)``, which loads any of these by name or path.

Weights are read and written as safetensors only: nothing here ever unpickles.
"""
