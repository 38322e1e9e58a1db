"""Synthetic multi-site stand-ins for the paper's datasets, written in the real on-disk layouts."""
