"""dock."""
