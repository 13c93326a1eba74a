"""Training: batching, the optimisation loop and the training jobs."""
