"""cohort_tab."""
