"""The dock's Compare tab: two runs on the open slide, patch by patch and per group."""
