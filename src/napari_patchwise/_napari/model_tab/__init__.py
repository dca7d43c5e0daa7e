"""The dock's Model tab: train a classifier on a cohort, follow its curves, predict the open
slide with a run.
"""
