"""Speculative decoding with a layer-pruned draft: greedy output identical to the target's own
greedy output for every draft-length policy, batched prompts of different lengths and a draft
head restricted to some tokens; sampled outputs follow the target's distribution (chi-square);
BiLD's rollback tolerance moves the output between the draft's and the target's; rows forget
the cache slots of the drafts they did not keep."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.analysis.layers import drop_layers
from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig, generate, pad_prompts
from jaxlab.samplers.speculative import (LookupDraft, SpeculativeConfig, draft_stops, entropy, lookup_proposal,
                                         restrict_head, forget, speculative_generate, svip_estimate)

CFG = transformer.Config(vocab_size=48, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)
PROMPTS = [[3, 11, 7, 20, 5], [9, 2], [4, 4, 30, 1, 17, 8, 22]]


@pytest.fixture(scope="module")
def models():
    params = transformer.init(CFG, jax.random.key(0))
    draft_cfg = dataclasses.replace(CFG, n_layers=2)
    return params, drop_layers(params, 2, 1), draft_cfg


def greedy(params, cfg, prompts, n):
    """A model's own greedy decoding, by the KV-cache sampler."""
    tokens, mask = pad_prompts(prompts, 0)
    out = generate(params, cfg, tokens, mask, jax.random.key(0), SampleConfig(max_new_tokens=n, temperature=0.0))
    return [[int(t) for t in row] for row in out.tokens]


def svip_at_median(draft, draft_cfg):
    """An SVIP config whose entropy threshold is the median entropy of the draft's next-token
    distributions over a prompt, so it stops drafting about half the time."""
    h = entropy(jax.nn.softmax(transformer.apply(draft, jnp.asarray(PROMPTS[2:]), draft_cfg)[0]))
    c = 0.1  # stop when 1 - sqrt(c H) < a, i.e. H > (1 - a)^2 / c
    return SpeculativeConfig(gamma=3, length="svip", svip_c=c, svip_min_accept=1 - float(np.sqrt(c * np.median(h))),
                             max_new_tokens=12)


@pytest.mark.parametrize("length", ["fixed", "svip"])
def test_greedy_speculative_equals_the_target_for_a_batch(models, length):
    params, draft, draft_cfg = models
    spec = SpeculativeConfig(gamma=3, max_new_tokens=12) if length == "fixed" else svip_at_median(draft, draft_cfg)
    expected = greedy(params, CFG, PROMPTS, 12)
    out = speculative_generate(params, CFG, draft, draft_cfg, PROMPTS, spec=spec)
    assert out["tokens"] == expected
    assert out["target_calls"] == len(out["emitted"]) == len(out["drafted"])
    assert max(out["drafted"]) <= spec.gamma
    assert all(sum(r[b] for r in out["emitted"]) >= 12 for b in range(len(PROMPTS)))
    if spec.length == "fixed":
        assert set(out["drafted"]) == {spec.gamma}
    else:  # the entropy rule cut some rounds short, some to no draft token at all
        assert min(out["drafted"]) < spec.gamma and max(out["drafted"]) > 0


def test_prompt_lookup_proposes_what_followed_the_latest_match():
    ctx = [5, 6, 7, 1, 5, 6, 9, 2, 5, 6]
    assert lookup_proposal(ctx, 3, max_ngram=2) == [9, 2, 5]      # "5 6" last seen at 4, then 9 2 5
    assert lookup_proposal(ctx, 3, max_ngram=3) == [9, 2, 5]      # no earlier "2 5 6": falls back to 2-grams
    assert lookup_proposal([1, 2, 3], 2) == [] and lookup_proposal([4], 2) == []
    assert lookup_proposal([3, 8, 3], 5) == [8, 3]                # up to the end of the context


def test_greedy_with_a_lookup_draft_equals_the_target(models):
    params, _, _ = models
    prompts = [[3, 11, 7, 3, 11, 7, 3], [9, 2, 9, 2, 9]]
    out = speculative_generate(params, CFG, None, LookupDraft(max_ngram=2), prompts,
                               spec=SpeculativeConfig(gamma=3, max_new_tokens=12))
    assert out["tokens"] == greedy(params, CFG, prompts, 12)
    assert out["draft_calls"] == 0 and max(out["drafted"]) > 0


def test_a_restricted_draft_head_keeps_the_target_output(models):
    params, draft, draft_cfg = models
    ids = np.arange(0, 48, 2)  # half the vocabulary: odd tokens are never drafted
    head = restrict_head(draft, draft_cfg, ids)
    assert head["unembed"]["kernel"].shape == (32, 24)
    out = speculative_generate(params, CFG, head, dataclasses.replace(draft_cfg, tie_embeddings=False), PROMPTS,
                               spec=SpeculativeConfig(gamma=3, max_new_tokens=12), draft_vocab=ids)
    assert out["tokens"] == greedy(params, CFG, PROMPTS, 12)
    with pytest.raises(ValueError, match="draft_vocab"):
        speculative_generate(params, CFG, head, draft_cfg, PROMPTS, draft_vocab=[48])


def test_a_perfect_draft_is_always_accepted_and_stops_at_a_stop_token(models):
    params, _, _ = models
    spec = SpeculativeConfig(gamma=4, max_new_tokens=16, temperature=1.0)
    out = speculative_generate(params, CFG, params, CFG, [[1, 2, 3]], spec=spec, key=jax.random.key(3))
    assert all(n == [4] for n in out["accepted"][:-1]) and out["target_calls"] == 4
    stop = out["tokens"][0][5]
    cut = speculative_generate(params, CFG, params, CFG, [[1, 2, 3]], spec=spec, key=jax.random.key(3),
                               stop_tokens=(stop,))
    assert cut["tokens"][0] == out["tokens"][0][:out["tokens"][0].index(stop) + 1]


@pytest.mark.parametrize("lookup", [False, True])
def test_sampled_tokens_follow_the_target_distribution(lookup):
    """512 rows of one prompt at temperature 1, a poor draft (another random model, total
    variation ~0.4 from the target; or prompt lookup, q one-hot), gamma 3: the first two emitted
    tokens' frequencies match the target's exact probabilities (chi-square)."""
    cfg = transformer.Config(vocab_size=6, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32)
    target, draft = transformer.init(cfg, jax.random.key(1)), transformer.init(cfg, jax.random.key(2))
    prompt = [1, 4, 1]  # lookup proposes "4 1" after the last "1"
    draft_cfg = LookupDraft() if lookup else cfg
    out = speculative_generate(target, cfg, None if lookup else draft, draft_cfg, [prompt] * 512,
                               spec=SpeculativeConfig(gamma=3, max_new_tokens=2, temperature=1.0),
                               key=jax.random.key(5))
    first = np.array([row[0] for row in out["tokens"]])
    p1 = np.asarray(jax.nn.softmax(transformer.apply(target, jnp.asarray([prompt]), cfg)[0, -1]))
    assert chi_square_p(np.bincount(first, minlength=6), p1) > 1e-3
    top = int(np.argmax(p1))
    second = np.array([row[1] for row in out["tokens"] if row[0] == top])
    p2 = np.asarray(jax.nn.softmax(transformer.apply(target, jnp.asarray([prompt + [top]]), cfg)[0, -1]))
    assert chi_square_p(np.bincount(second, minlength=6), p2) > 1e-3
    assert max(max(r) for r in out["accepted"]) >= 1  # the batch did advance past rejections
    assert out["drafted"][0] == (2 if lookup else 3)


def chi_square_p(counts, probs):
    """Pearson's chi-square p-value against ``probs`` (scipy-free: regularized gamma via series)."""
    n = counts.sum()
    keep = probs * n >= 1
    stat = float(((counts[keep] - n * probs[keep]) ** 2 / (n * probs[keep])).sum())
    dof = int(keep.sum()) - 1
    from math import exp, lgamma, log
    a, x = dof / 2, stat / 2  # P(chi2 > stat) = 1 - P(a, x)
    term = total = 1.0 / a
    for i in range(1, 500):
        term *= x / (a + i)
        total += term
    return max(0.0, 1.0 - exp(-x + a * log(x) - lgamma(a)) * total) if x > 0 else 1.0


def test_bild_rollback_moves_between_draft_and_target(models):
    params, draft, draft_cfg = models
    loose = SpeculativeConfig(gamma=3, accept="bild", rollback=1e9, max_new_tokens=12)
    strict = dataclasses.replace(loose, rollback=0.0)
    # nothing is rolled back: every round keeps the draft's 3 tokens and adds the target's argmax
    out = speculative_generate(params, CFG, draft, draft_cfg, PROMPTS, spec=loose)
    assert all(a == [3, 3, 3] for a in out["accepted"])
    assert [row[:3] for row in out["tokens"]] == [row[:3] for row in greedy(draft, draft_cfg, PROMPTS, 3)]
    # no draft token has -log p <= 0: the output is the target's greedy output
    assert speculative_generate(params, CFG, draft, draft_cfg, PROMPTS, spec=strict)["tokens"] == \
        greedy(params, CFG, PROMPTS, 12)
    with pytest.raises(ValueError, match="greedy"):
        SpeculativeConfig(accept="bild", temperature=1.0)


def test_draft_length_rules():
    q = jnp.asarray([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.6, 0.4, 0.0, 0.0]])
    h = np.array([0.0, np.log(4), -(0.6 * np.log(0.6) + 0.4 * np.log(0.4))])
    np.testing.assert_allclose(svip_estimate(q, 0.5), 1 - np.sqrt(0.5 * h), rtol=1e-6)
    svip = SpeculativeConfig(length="svip", svip_c=0.5, svip_min_accept=0.5)  # stop when H > 0.5
    assert draft_stops(q, svip).tolist() == [False, True, True]
    assert draft_stops(q, SpeculativeConfig(length="bild", fallback=0.5)).tolist() == [False, True, False]
    assert not draft_stops(q, SpeculativeConfig()).any()
    with pytest.raises(ValueError, match="length"):
        SpeculativeConfig(length="adaptive")


def test_forget_drops_each_rows_unkept_slots():
    cache = transformer.init_cache(CFG, 2, 8)
    cache = {**cache, "segment_ids": jnp.ones((2, 8), jnp.int32), "index": jnp.int32(6)}
    back = forget(cache, jnp.int32(2), jnp.asarray([3, 1]), jnp.asarray([5, 3]))
    # row 0 keeps slots 2..4 of the round that wrote 2..5, row 1 keeps slot 2; slots from 6 on are unwritten
    assert int(back["index"]) == 6
    assert back["segment_ids"].tolist() == [[1, 1, 1, 1, 1, 0, 1, 1], [1, 1, 1, 0, 0, 0, 1, 1]]
    assert back["positions"].tolist() == [5, 3]
    with pytest.raises(ValueError, match="vocabulary"):
        speculative_generate({}, CFG, {}, dataclasses.replace(CFG, vocab_size=50), [[1]])
    with pytest.raises(ValueError, match="non-empty"):
        speculative_generate({}, CFG, {}, CFG, [[1], []])


def test_warm_up_compiles_every_shape_a_call_can_take(models):
    """After warm_up, decoding a prompt of the same length bucket compiles nothing."""
    params, draft, draft_cfg = models
    spec = svip_at_median(draft, draft_cfg)  # rounds draft 0 .. 3 tokens: several verification shapes
    from jaxlab.samplers import speculative

    steps = (speculative._verify, speculative._draft_step, speculative._prefill, speculative.forget)
    for f in steps:  # whatever earlier tests compiled
        f.clear_cache()
    speculative.warm_up(params, CFG, draft, draft_cfg, 1, 5, spec=spec)
    sizes = {f: f._cache_size() for f in steps}
    assert sizes[speculative._verify] == spec.gamma + 1
    out = speculative_generate(params, CFG, draft, draft_cfg, [[3, 11, 7, 20, 5]], spec=spec)
    assert len(set(out["drafted"])) >= 2
    assert {f: f._cache_size() for f in sizes} == sizes
