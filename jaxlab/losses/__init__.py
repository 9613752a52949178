"""Losses as pure functions of arrays: each returns a scalar (or sums) and a metrics dict.

  lm          cross-entropy with z-loss, masked SFT, DFT, importance-weighted SFT
  preference  DPO (with label smoothing), IPO, SimPO, APO-zero, APO-down
  policy      clipped policy-gradient surrogates (GRPO, DAPO, Dr. GRPO, GSPO), advantages, KL
  verifier    the GenRM objective and the p("Yes") score
"""

from jaxlab.losses import lm, policy, preference, verifier

__all__ = ["lm", "policy", "preference", "verifier"]
