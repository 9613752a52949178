import jax.numpy as jnp
import numpy as np

from jaxlab.nn.distributions import categorical_entropy


def test_categorical_entropy_known_values_and_filtered_tokens():
    # uniform over 4 -> ln 4; a very peaked distribution -> ~0; [ln 1, ln 3] -> H of (1/4, 3/4)
    logits = jnp.array([[[0.0, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 0.0]]])
    np.testing.assert_allclose(categorical_entropy(logits), [[np.log(4.0), 0.0]], atol=1e-6)
    h = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(categorical_entropy(jnp.array([[0.0, np.log(3.0)]])), [h], rtol=1e-6)
    # a filtered (-inf) token has probability 0: uniform over the 2 kept tokens, finite
    kept = categorical_entropy(jnp.array([0.0, -jnp.inf, 0.0, -jnp.inf]))
    np.testing.assert_allclose(kept, np.log(2.0), rtol=1e-6)
    # already-normalised log-probs give the same entropy as the logits they came from
    z = jnp.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(categorical_entropy(z - jnp.log(jnp.sum(jnp.exp(z)))), categorical_entropy(z),
                               rtol=1e-6)
