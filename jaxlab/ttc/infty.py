"""InftyThink: reason in bounded segments, summarise, continue from the summary (Yan et al.
2025, "InftyThink: Breaking the Length Limits of Long-Context Reasoning").

One pass writes the whole reasoning after the prompt, so the longest instance it can solve is
bounded by the model's context C. InftyThink runs iterations instead: iteration i reads the
prompt and the summary s_{i-1} of everything reasoned so far (none at first), writes at most
``segment_tokens`` of reasoning, and ends either with a final answer or with a new summary s_i;
the next iteration starts from prompt + s_i, with the old reasoning dropped. Each iteration's
context is |prompt| + |s| + segment, independent of how long the whole reasoning is; an
iteration cap bounds the total.

    context_i = prompt + s_{i-1}            (s_0 empty)
    out_i     = model(context_i)            (at most segment_tokens, and context_i + out_i <= C)
    out_i ends in "[summary]" -> s_i = that summary, continue;  in "=answer" -> stop

A task that can be learnt this way needs a state that can be summarised. Here: iterating a
fixed map on a small state (:class:`IterationTask`, x_{t+1} = (a x_t + b) mod m for n steps,
answer x_n). Its programmatic summary teacher writes, for SFT, both the one-pass trace
(``one_pass_record``) and the InftyThink segments (``segment_records``), where a summary is the
state and the steps left: "[x=41 n=19]". Parsers of model output are bounded regular
expressions on at most ``MAX_PARSE`` characters; nothing is evaluated.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import jax
import numpy as np

from jaxlab.data.chat import encode_prompt
from jaxlab.samplers import SampleConfig, generate, pad_prompts

MAX_PARSE = 4096
SUMMARY_RE = re.compile(r"\[x=(\d{1,4}) n=(\d{1,4})\]\s*$")
ANSWER_RE = re.compile(r"=(\d{1,4})\s*$")


@dataclasses.dataclass(frozen=True)
class IterationTask:
    """x_{t+1} = (a x_t + b) mod m, from x_0 for n steps; the answer is x_n.

    Prompt "x=17 n=5:"; one-pass response " 24 53 4 23 52 =52" (every x_t, then "=x_n");
    InftyThink segments of ``steps`` updates each end in "[x=x_t n=n-t]" or, at the end, "=x_n"."""
    a: int = 5
    b: int = 3
    m: int = 64

    def step(self, x: int) -> int:
        return (self.a * x + self.b) % self.m

    def run(self, x0: int, n: int) -> list[int]:
        """x_1 .. x_n."""
        xs, x = [], x0
        for _ in range(n):
            x = self.step(x)
            xs.append(x)
        return xs

    def prompt(self, x0: int, n: int) -> str:
        return f"x={x0} n={n}:"

    def answer(self, x0: int, n: int) -> int:
        return self.run(x0, n)[-1] if n else x0

    def one_pass_record(self, x0: int, n: int) -> dict:
        xs = self.run(x0, n)
        return {"prompt": self.prompt(x0, n), "response": "".join(f" {x}" for x in xs) + f" ={self.answer(x0, n)}"}

    def segment_records(self, x0: int, n: int, steps: int) -> list[dict]:
        """The InftyThink training records of one instance: iteration i's prompt (the problem and
        the previous summary) and its response (up to ``steps`` updates, then the next summary or
        the answer)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        records, x, left, summary = [], x0, n, ""
        while True:
            k = min(steps, left)
            xs = self.run(x, k)
            x, left = (xs[-1] if xs else x), left - k
            end = f" ={x}" if left == 0 else f" {format_summary(x, left)}"
            records.append({"prompt": self.prompt(x0, n) + summary, "response": "".join(f" {v}" for v in xs) + end})
            if left == 0:
                return records
            summary = f" {format_summary(x, left)}"

    def draw(self, rng: np.random.Generator, n_low: int, n_high: int) -> tuple[int, int]:
        return int(rng.integers(self.m)), int(rng.integers(n_low, n_high + 1))


def format_summary(x: int, left: int) -> str:
    return f"[x={x} n={left}]"


def parse_end(text: str) -> tuple[str, str | None]:
    """("summary", "[x=.. n=..]") or ("answer", digits) from the end of one iteration's output,
    or ("none", None); reads at most the last ``MAX_PARSE`` characters."""
    tail = text[-MAX_PARSE:]
    m = SUMMARY_RE.search(tail)
    if m:
        return "summary", format_summary(int(m.group(1)), int(m.group(2)))
    m = ANSWER_RE.search(tail)
    if m:
        return "answer", m.group(1)
    return "none", None


def _generate_texts(params, cfg, tokenizer, prompts: Sequence[str], budgets: Sequence[int], *,
                    batch_size: int) -> list[tuple[str, int]]:
    """Greedy completions (text, tokens) of each prompt with ``budgets[i]`` new tokens at most
    (a budget < 1 gives ("", 0)). Every batch decodes max(budgets) tokens (one compiled shape)
    and each row is cut to its own budget: greedy decoding is causal, so a row's first b tokens
    are what a budget of b would have produced."""
    out: list[tuple[str, int]] = [("", 0)] * len(prompts)
    rows = [i for i, b in enumerate(budgets) if b >= 1]
    if not rows:
        return out
    ids = [encode_prompt(p, tokenizer) for p in prompts]
    sample_cfg = SampleConfig(max_new_tokens=int(max(budgets)), temperature=0.0,
                              stop_tokens=tuple(tokenizer.eos_ids), pad_id=tokenizer.pad_id)
    for s in range(0, len(rows), batch_size):
        part = rows[s:s + batch_size]
        tokens_BT, mask_BT = pad_prompts([ids[i] for i in part], tokenizer.pad_id)
        res = generate(params, cfg, tokens_BT, mask_BT, jax.random.key(0), sample_cfg)
        for j, i in enumerate(part):
            n = min(int(res.lengths[j]), int(budgets[i]))
            toks = [int(t) for t in np.asarray(res.tokens[j, :n]) if int(t) not in tokenizer.eos_ids]
            out[i] = (tokenizer.decode(np.asarray(toks, np.int32)), n)
    return out


def one_pass(params, cfg, tokenizer, prompts: Sequence[str], *, max_context: int, batch_size: int = 64) -> list[dict]:
    """Each prompt answered in one pass with the context's room: max_context - |prompt| new
    tokens. Returns per prompt {"answer" (str or None), "tokens", "text"}."""
    budgets = [max_context - len(encode_prompt(p, tokenizer)) for p in prompts]
    results = []
    for text, n in _generate_texts(params, cfg, tokenizer, prompts, budgets, batch_size=batch_size):
        kind, value = parse_end(text)
        results.append({"answer": value if kind == "answer" else None, "tokens": n, "text": text})
    return results


def infty_think(params, cfg, tokenizer, prompts: Sequence[str], *, segment_tokens: int, max_context: int,
                max_iterations: int, batch_size: int = 64) -> list[dict]:
    """InftyThink (module docstring) on every prompt at once: each iteration's new tokens are
    min(segment_tokens, max_context - |prompt + summary|). A row stops at an answer, at an
    output that ends in neither a summary nor an answer (no answer), or after
    ``max_iterations``. Returns per prompt {"answer", "tokens" (all iterations), "iterations",
    "summaries"}."""
    if segment_tokens < 1 or max_iterations < 1:
        raise ValueError(f"segment_tokens and max_iterations must be >= 1, got {segment_tokens}, {max_iterations}")
    state = [{"answer": None, "tokens": 0, "iterations": 0, "summaries": [], "context": p} for p in prompts]
    active = list(range(len(prompts)))
    for _ in range(max_iterations):
        if not active:
            break
        contexts = [state[i]["context"] for i in active]
        budgets = [min(segment_tokens, max_context - len(encode_prompt(c, tokenizer))) for c in contexts]
        outs = _generate_texts(params, cfg, tokenizer, contexts, budgets, batch_size=batch_size)
        still = []
        for i, (text, n) in zip(active, outs):
            st = state[i]
            st["tokens"] += n
            st["iterations"] += 1
            kind, value = parse_end(text)
            if kind == "answer":
                st["answer"] = value
            elif kind == "summary":
                st["summaries"].append(value)
                st["context"] = prompts[i] + " " + value
                still.append(i)
        active = still
    return [{k: v for k, v in st.items() if k != "context"} for st in state]
