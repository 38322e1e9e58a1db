import hashlib

import numpy as np
from scipy import ndimage

from vlsa.data.fundus import DoFEReader
from vlsa.data.mms import MMSReader
from vlsa.data.synth.cardiac import VENDORS, render_subject
from vlsa.data.synth.fundus import SITES, generate_fundus, render_fundus


def _digest(root):
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.png")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_fundus_is_deterministic_for_a_seed(tmp_path):
    a = generate_fundus(tmp_path / "a", per_domain=4, size=48, seed=3)
    b = generate_fundus(tmp_path / "b", per_domain=4, size=48, seed=3)
    c = generate_fundus(tmp_path / "c", per_domain=4, size=48, seed=4)
    assert _digest(a) == _digest(b) != _digest(c)


def test_fundus_sites_differ_in_colour_but_labels_stay_plausible(fundus_root):
    reader = DoFEReader(fundus_root)
    stats = {}
    for d in reader.domains():
        samples = list(reader.samples(d, "train")) + list(reader.samples(d, "test"))
        colour = np.array([s.image.reshape(3, -1).mean(1) for s in samples])  # per-image mean RGB
        stats[d] = colour
        for s in samples:
            disc, cup = s.label >= 1, s.label == 2
            assert cup.any() and disc.sum() > cup.sum()
            # the cup lies inside the disc, with rim around it
            assert not (ndimage.binary_dilation(cup) & ~disc).any()
    # sites separate: every pair of site means is further apart than the within-site spread
    names = list(stats)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            gap = np.linalg.norm(stats[a].mean(0) - stats[b].mean(0))
            spread = max(stats[a].std(0).max(), stats[b].std(0).max())
            assert gap > 2 * spread, (a, b, gap, spread)


def test_fundus_cup_to_disc_ratio_differs_by_site():
    cdrs = {s.name: [render_fundus(s, 48, np.random.default_rng(i))[2] for i in range(12)] for s in SITES}
    assert np.mean(cdrs["Domain1"]) > np.mean(cdrs["Domain3"]) + 0.1  # glaucoma-heavy Drishti-like site


def test_cardiac_anatomy_is_plausible():
    rng = np.random.default_rng(0)
    image, labels, ed, es, zooms = render_subject(VENDORS[0], rng)
    assert image.ndim == 4 and labels.shape == image.shape and ed != es
    annotated = [t for t in range(labels.shape[3]) if labels[..., t].any()]
    assert sorted(annotated) == sorted([ed, es])
    for z in range(labels.shape[2]):
        lab = labels[:, :, z, ed]
        lv, myo, rv = lab == 1, lab == 2, lab == 3
        if lv.any():
            # the myocardium surrounds the LV: growing the LV by a pixel only reaches LV or MYO
            ring = ndimage.binary_dilation(lv) & ~lv
            assert np.all(myo[ring])
        if rv.any():
            assert (ndimage.binary_dilation(rv) & myo).any()  # RV touches the septum
    # the cavities shrink at ES
    assert (labels[..., es] == 1).sum() < (labels[..., ed] == 1).sum()
    # the LV blood pool is brighter than the myocardium
    frame = image[..., ed]
    assert frame[labels[..., ed] == 1].mean() > 1.5 * frame[labels[..., ed] == 2].mean()


def test_cardiac_vendors_differ(cardiac_root):
    reader = MMSReader(cardiac_root)
    contrast, spacing = {}, {}
    for v in reader.domains():
        s = [x for x in reader.samples(v, "train") if (x.label == 1).any() and (x.label == 2).any()]
        contrast[v] = np.mean([x.image[0][x.label == 1].mean() - x.image[0][x.label == 2].mean() for x in s])
        spacing[v] = s[0].spacing
    assert len(set(spacing.values())) == 4  # native in-plane spacing differs per vendor
    assert max(contrast.values()) - min(contrast.values()) > 0.15
