"""Training: state, optimizer, sharded step, checkpoints, metric writers and the loop."""
