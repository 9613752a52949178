"""Test-time compute: voting over samples and trace confidence (DeepConf).

    weighted_vote(keys, weights)       majority / confidence-weighted votes
    best_of_n(scores_PN, correct_PN)   best-of-N selection by a verifier's scores (ties: mean)
    filtered_vote(keys, confidences)   DeepConf's filtered, confidence-weighted vote
    token_confidence, group_confidence, trace_confidence, stop_threshold, early_stop_step
    self_augment(complete, system, problems)   self-augmented prompting: describe, then answer

The harness (:mod:`jaxlab.ttc.harness`, ``jaxlab ttc``) runs the methods on one set of samples
of a model and measures accuracy against tokens generated.
"""

from jaxlab.ttc.best_of_n import best_of_k_curve, best_of_n
from jaxlab.ttc.deepconf import early_stop_step, group_confidence, stop_threshold, token_confidence, trace_confidence
from jaxlab.ttc.self_augment import self_augment
from jaxlab.ttc.voting import filter_confident, filtered_vote, weighted_vote

__all__ = ["best_of_k_curve", "best_of_n", "early_stop_step", "filter_confident", "filtered_vote",
           "group_confidence", "self_augment", "stop_threshold", "token_confidence", "trace_confidence",
           "weighted_vote"]
