"""Pure measures on sampled pixel features (N x D) with their class and domain.

dispersion ratio (per domain and class): the mean distance of a class's features to their class
    centroid, divided by the mean distance between that domain's class centroids. A Fisher-style
    ratio: lower means compact, well separated classes.
silhouette (per domain): scikit-learn's silhouette score of the features grouped by class.
centroid shift (per target domain and class): cosine distance between the class centroid on the
    source domain(s) and on the target domain.
text alignment (per class): mean cosine similarity of the class's pixel embeddings to each class
    text embedding, and the fraction of its pixels whose nearest text embedding is its own class.
"""

from __future__ import annotations

import numpy as np


def centroids(feats: np.ndarray, labels: np.ndarray, classes) -> dict[int, np.ndarray]:
    return {c: feats[labels == c].mean(0) for c in classes if np.any(labels == c)}


def dispersion_ratio(feats: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """{class: spread / separation} for one domain (needs at least two classes present)."""
    classes = sorted(np.unique(labels).tolist())
    cents = centroids(feats, labels, classes)
    if len(cents) < 2:
        return {c: float("nan") for c in classes}
    keys = list(cents)
    pair = [np.linalg.norm(cents[a] - cents[b]) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    separation = float(np.mean(pair))
    return {c: float(np.linalg.norm(feats[labels == c] - cents[c], axis=1).mean() / max(separation, 1e-12))
            for c in keys}


def silhouette(feats: np.ndarray, labels: np.ndarray, max_samples: int = 2000, seed: int = 0) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    n = min(len(labels), max_samples)
    return float(silhouette_score(feats, labels, sample_size=n, random_state=seed))


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def centroid_shift(source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray]) -> dict[int, float]:
    """{class: cosine distance between source and target class centroids}."""
    (fs, ls), (ft, lt) = source, target
    cs = centroids(fs, ls, np.unique(ls))
    ct = centroids(ft, lt, np.unique(lt))
    return {int(c): cosine_distance(cs[c], ct[c]) for c in cs if c in ct}


def text_alignment(embeddings: np.ndarray, labels: np.ndarray, text: np.ndarray) -> dict:
    """embeddings N x E (pixel), text K x E -> {similarity: K x K mean cos (row = pixel class),
    nearest_own: per-class fraction of pixels whose most similar text is their own class}."""
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    t = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    sim = e @ t.T  # N x K
    k = t.shape[0]
    table = np.full((k, k), np.nan)
    own = {}
    for c in range(k):
        mask = labels == c
        if mask.any():
            table[c] = sim[mask].mean(0)
            own[c] = float((sim[mask].argmax(1) == c).mean())
    return {"similarity": table, "nearest_own": own}
