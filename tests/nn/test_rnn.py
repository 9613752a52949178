"""The input-selected dense-transition RNN: the scan equals its formula step by step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nn.rnn import init_token_rnn, token_rnn


def test_token_rnn_is_its_formula():
    params = init_token_rnn(jax.random.key(0), vocab_size=5, d_hidden=6)
    params = {**params, "b": jax.random.normal(jax.random.key(1), (5, 6))}
    tokens = jnp.array([[0, 3, 3, 1], [4, 2, 0, 0]])
    h_BTH = token_rnn(params, tokens)
    u, b = np.asarray(params["u"]), np.asarray(params["b"])
    for row in range(2):
        h = np.tanh(np.asarray(params["h_init"]))
        for t, tok in enumerate(np.asarray(tokens[row])):
            h = np.tanh(u[tok] @ h + b[tok])
            np.testing.assert_allclose(h_BTH[row, t], h, rtol=1e-5, atol=1e-6)
    # each token's transition is an orthogonal matrix at initialisation
    np.testing.assert_allclose(np.einsum("vij,vkj->vik", u, u), np.broadcast_to(np.eye(6), (5, 6, 6)), atol=1e-5)
    with pytest.raises(ValueError, match="tokens must be"):
        token_rnn(params, tokens[0])
