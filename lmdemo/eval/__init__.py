"""Evaluation: scoring models on labelled sets with offline `evaluate` metrics, base vs fine-tuned."""
