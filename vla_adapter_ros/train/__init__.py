"""Fine-tuning VLA-Adapter on converted datasets."""
