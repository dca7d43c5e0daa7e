"""The dock's Cohort tab: browse a cohort manifest's slides, open one, its counts beside the
cohort's.
"""
