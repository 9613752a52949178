"""``jaxlab generate``: print a model's completion of a prompt.

    jaxlab generate MODEL --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T]
                    [--top-k K] [--top-p P] [--seed S] [--dtype float32|bfloat16]

MODEL is anything :func:`jaxlab.interop.models.load_model` resolves: a registry name
(``smollm2-135m-instruct``), a .gguf file, a Hugging Face folder, a jaxlab checkpoint or a
``jaxlab run`` workdir. The prompt is encoded as it is (with BOS when the tokenizer's
``add_bos`` says so); ``--chat`` lays it out as one user message under the tokenizer's chat
template, followed by the generation prompt (:func:`jaxlab.data.chat.encode_prompt`; ChatML
for SmolLM2, "User: ...\\nAssistant: " for bytes). Generation
(:func:`jaxlab.samplers.generate`, temperature 0 = greedy) stops at any of the tokenizer's
``eos_ids`` or after N tokens; the completion, without the stop token, goes to stdout.
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

DTYPES = ("float32", "bfloat16")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxlab generate", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="registry name, .gguf file, Hugging Face folder, jaxlab checkpoint "
                                 "or run workdir")
    p.add_argument("--prompt", required=True, help="the text to continue (or the user message, --chat)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="params, activations and KV cache dtype (logits stay float32)")
    return p


def prompt_ids(tokenizer, prompt: str, *, chat: bool) -> np.ndarray:
    """int32 [T]: the chat-template generation prompt for ``prompt`` (``chat``), else
    [BOS]? + encode(prompt)."""
    from jaxlab.data.chat import encode_prompt

    if chat:
        return encode_prompt([{"role": "user", "content": prompt}], tokenizer)
    return tokenizer.encode(prompt, bos=tokenizer.add_bos)


def complete(cfg, params, tokenizer, prompt: str, *, chat: bool = False, max_new_tokens: int = 128,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> str:
    """The decoded completion of ``prompt`` (module docstring), up to the first stop id."""
    from jaxlab.samplers import SampleConfig, generate, pad_prompts

    ids_T = prompt_ids(tokenizer, prompt, chat=chat)
    if ids_T.size == 0:
        raise ValueError("the prompt encodes to no tokens; give a non-empty --prompt")
    stops = tuple(int(i) for i in tokenizer.eos_ids if i < cfg.vocab_size)
    sample_cfg = SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                              top_p=top_p, stop_tokens=stops, pad_id=int(tokenizer.pad_id))
    tokens_BT, mask_BT = pad_prompts([ids_T], tokenizer.pad_id)
    out = generate(params, cfg, tokens_BT, mask_BT, jax.random.PRNGKey(seed), sample_cfg)
    ids_N = np.asarray(out.tokens[0, :int(out.lengths[0])])
    if ids_N.size and int(ids_N[-1]) in stops:  # the stop token ends the row; it is not text
        ids_N = ids_N[:-1]
    return tokenizer.decode(ids_N)


def generate_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.max_new_tokens < 1:
        raise SystemExit(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    from jaxlab.interop.models import load_model

    try:
        cfg, params, tokenizer = load_model(args.model, dtype=args.dtype)
        text = complete(cfg, params, tokenizer, args.prompt, chat=args.chat,
                        max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    except ValueError as e:  # unknown model, bad settings (SampleConfig), unreadable files
        print(f"jaxlab generate: error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0
