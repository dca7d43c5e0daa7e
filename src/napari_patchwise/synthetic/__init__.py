"""Synthetic slides for tests, demos and benchmarks: multimodal tissue with a planted
spurious correlation, and planted clinical artefacts with their ground truth.
"""
