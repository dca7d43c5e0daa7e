"""Analysis of patch tables and predictions: metrics per group, their O(log N) slider-time
evaluation, two runs compared, the threshold curve, attribute ranking, slice discovery,
slide-level intervals. Plain arrays and tables in, numbers and tables out.
"""
