"""Inference: the engine the policy node calls, its off-thread worker, and the model-to-robot I/O spec."""
