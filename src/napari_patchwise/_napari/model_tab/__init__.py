"""model_tab."""
