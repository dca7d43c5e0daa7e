"""compare_tab."""
