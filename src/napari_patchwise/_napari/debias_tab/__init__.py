"""The dock's Debias tab: embed, retrain a head, the WGA curve over the threshold, the
attribute ranking and discovered slices.
"""
