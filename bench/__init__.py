"""Benchmarks against anchors; each prints its measurements next to the anchor's, as ratios."""
