"""Data layer: readers turn files on disk into 2D `Sample`s; they never know about models."""
