"""Data: readers for user files (files, tabular) and the bundled eval sets, samples, few-shot examples and adapter."""
