"""Data for mid-training: sources, templates, the token-weighted mixture, packing."""
