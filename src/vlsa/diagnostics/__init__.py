"""Diagnostics that test the paper's claim: feature dispersion under domain shift, semantic
centres, and text-pixel alignment."""
