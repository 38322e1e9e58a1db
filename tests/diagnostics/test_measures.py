import numpy as np
import pytest

from vlsa.diagnostics.measures import centroid_shift, dispersion_ratio, silhouette, text_alignment


def _clusters(spread, n=200, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 5.0], [5.0, 0.0, 5.0], [0.0, 5.0, 5.0]]) + offset
    labels = np.repeat(np.arange(3), n)
    return centres[labels] + spread * rng.normal(size=(3 * n, 3)), labels


def test_tight_clusters_have_a_lower_dispersion_ratio_than_spread_ones():
    tight = dispersion_ratio(*_clusters(0.2))
    spread = dispersion_ratio(*_clusters(1.5))
    # spread / separation: radius of a 3D Gaussian ~ 1.6 sigma, separation ~ 5.6
    assert tight[0] == pytest.approx(0.2 * 1.6 / 5.69, rel=0.1)
    assert all(tight[c] < spread[c] / 5 for c in range(3))
    assert silhouette(*_clusters(0.2)) > 0.8 > silhouette(*_clusters(1.5))


def test_centroid_shift_sees_a_moved_class_only():
    src = _clusters(0.1, seed=1)
    feats, labels = _clusters(0.1, seed=2)
    feats = feats.copy()
    feats[labels == 2] += np.array([4.0, -4.0, 0.0])  # only class 2 moves
    shift = centroid_shift(src, (feats, labels))
    assert shift[0] < 1e-3 and shift[1] < 1e-3
    moved = np.array([4.0, 1.0, 5.0])
    expected = 1 - moved @ np.array([0, 5, 5]) / (np.linalg.norm(moved) * np.linalg.norm([0, 5, 5]))
    assert shift[2] == pytest.approx(expected, abs=0.01)


def test_text_alignment_fraction_of_nearest_own_text():
    text = np.eye(3)
    labels = np.array([0, 0, 1, 1, 2, 2])
    emb = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [1, 0.2, 0], [0, 0, 1], [0, 0.1, 1]], dtype=float)
    al = text_alignment(emb, labels, text)
    assert al["nearest_own"] == {0: 1.0, 1: 0.5, 2: 1.0}
    assert al["similarity"][0, 0] > al["similarity"][0, 1]
