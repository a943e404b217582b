"""Warm-start plans the daemon builds from a model's earlier studies."""

MODEL = "credit"
