"""Training and inference (torch, imported lazily): run settings and presets, the patch
cache and datasets, samplers, models and encoders, one forward pass, the methods over one
shared loop, run folders, predict, sweeps, embeddings and head-only training.
"""
