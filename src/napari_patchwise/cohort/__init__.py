"""The cohort: which slides (and masks) form the train / val / test splits, and how to
split patients between them.
"""
