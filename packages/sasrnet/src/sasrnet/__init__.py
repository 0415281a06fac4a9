"""sasrnet."""
