"""Test-time compute: voting over samples and trace confidence (DeepConf).

    weighted_vote(keys, weights)       majority / confidence-weighted votes
    filtered_vote(keys, confidences)   DeepConf's filtered, confidence-weighted vote
    token_confidence, group_confidence, trace_confidence, stop_threshold, early_stop_step
"""

from jaxlab.ttc.deepconf import early_stop_step, group_confidence, stop_threshold, token_confidence, trace_confidence
from jaxlab.ttc.voting import filter_confident, filtered_vote, weighted_vote

__all__ = ["early_stop_step", "filter_confident", "filtered_vote", "group_confidence", "stop_threshold",
           "token_confidence", "trace_confidence", "weighted_vote"]
