"""debias_tab."""
