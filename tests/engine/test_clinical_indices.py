"""Per-subject clinical indices of `vlsa evaluate` from slices of ED/ES volumes: drawn cylinders of
known volume, spacing known or not (EF accepted, volumes refused), regions a dataset or a slice
does not annotate, and the clinical.csv contract."""

import csv
import io
import math

import numpy as np
import pytest

from vlsa.clinical import CARDIAC_INDICES
from vlsa.data.sample import Sample
from vlsa.data.spec import CARDIAC
from vlsa.engine.clinical_indices import (
    COLUMNS,
    ClinicalTable,
    clinical_csv,
    domain_agreement,
    subject_indices,
)


def disc(shape, radius, centre=(16, 16)):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def heart(radius, shape=(32, 32)):
    """One slice: LV disc of `radius`, MYO ring to radius + 3, RV disc in a corner."""
    lab = np.zeros(shape, np.uint8)
    lab[disc(shape, radius + 3)] = 2
    lab[disc(shape, radius)] = 1
    lab[disc(shape, 3, (4, 4))] = 3
    return lab


def volume_samples(subject, phase, radius, slices=5, known=True, annotated=None, spacing=(1.25, 1.5)):
    """Samples of one ED or ES volume on its original grid (no resampling), slice step 8 mm."""
    out = []
    for z in range(slices):
        lab = heart(radius)
        out.append(Sample(
            image=None, label=lab.astype(np.int64), domain="D", case_id=subject, name=f"{subject}_{phase}_z{z}",
            volume_id=f"{subject}_{phase}", slice_index=z, spacing=spacing, slice_thickness=8.0,
            meta={"phase": phase, "spacing_known": known, "ed_es": {"ED": 1, "ES": 9}},
            annotated=None if annotated is None else annotated[z]))
    return out


def test_indices_of_drawn_cylinders_on_each_subject(tmp_path):
    samples = volume_samples("s1", "ED", 9) + volume_samples("s1", "ES", 6) + volume_samples("s2", "ES", 5) \
        + volume_samples("s2", "ED", 8)
    maps = [s.label.copy() for s in samples]
    maps[-1][maps[-1] == 1] = 2  # s2's last ED slice: its LV predicted as myocardium
    s1, s2 = subject_indices(samples, maps, CARDIAC, "D")
    voxel_ml = 8.0 * 1.25 * 1.5 / 1000
    ed, es = disc((32, 32), 9).sum() * 5 * voxel_ml, disc((32, 32), 6).sum() * 5 * voxel_ml
    assert s1.true["lv_edv"] == pytest.approx(ed) and s1.pred["lv_esv"] == pytest.approx(es)
    assert s1.true["lv_ef"] == pytest.approx(100 * (ed - es) / ed)
    assert ed == pytest.approx(math.pi * 9 ** 2 * 40 * 1.25 * 1.5 / 1000, rel=0.05)  # pi r^2 h
    myo = (disc((32, 32), 12) & ~disc((32, 32), 9)).sum() * 5 * voxel_ml
    assert s1.true["lv_mass"] == pytest.approx(1.05 * myo)
    assert s1.true["rv_ef"] == pytest.approx(0.0)  # the RV does not change
    lost = disc((32, 32), 8).sum() * voxel_ml
    assert s2.true["lv_edv"] - s2.pred["lv_edv"] == pytest.approx(lost)
    assert s2.pred["lv_mass"] - s2.true["lv_mass"] == pytest.approx(1.05 * lost)
    stats = domain_agreement([s1, s2])
    assert stats["subjects"] == 2 and stats["indices"]["lv_edv"]["bias"] == pytest.approx(-lost / 2)
    assert stats["indices"]["lv_edv"]["mae"] == pytest.approx(lost / 2) and stats["indices"]["lv_edv"]["unit"] == "mL"


def test_without_spacing_ef_is_given_and_volumes_are_refused():
    samples = volume_samples("s", "ED", 9, known=False) + volume_samples("s", "ES", 6, known=False)
    (s,) = subject_indices(samples, [x.label for x in samples], CARDIAC, "ACDC")
    ed, es = disc((32, 32), 9).sum(), disc((32, 32), 6).sum()
    assert s.pred["lv_ef"] == pytest.approx(100 * (ed - es) / ed) == pytest.approx(s.true["lv_ef"])
    for name in ("lv_edv", "lv_esv", "lv_sv", "lv_mass", "rv_edv"):
        assert math.isnan(s.pred[name]) and math.isnan(s.true[name]) and "spacing unknown" in s.refused[name]
    row = s.row()
    assert row["lv_edv_pred"] == row["lv_edv_true"] == "" and float(row["lv_ef_true"]) == pytest.approx(s.true["lv_ef"])


def test_regions_not_annotated_give_no_index_and_partial_myocardium_is_measured_where_drawn():
    # Sunnybrook-like: no RV in the dataset; the ED myocardium drawn on slices 1 and 3 only
    ed_regions = [("lv",), ("lv", "myo"), ("lv",), ("lv", "myo"), ("lv",)]
    samples = volume_samples("s", "ED", 9, annotated=ed_regions) + volume_samples("s", "ES", 6, annotated=[("lv",)] * 5)
    for x in samples:  # the reference has no MYO where it is not annotated, the prediction does
        x.label[(x.label == 2) & ("myo" not in x.annotated)] = 0
        x.label[x.label == 3] = 0
    maps = [heart(9) if x.meta["phase"] == "ED" else heart(6) for x in samples]
    (s,) = subject_indices(samples, maps, CARDIAC, "Sunnybrook", annotated=("lv", "myo"))
    voxel_ml = 8.0 * 1.25 * 1.5 / 1000
    ring = (disc((32, 32), 12) & ~disc((32, 32), 9)).sum()
    assert s.pred["lv_mass"] == pytest.approx(s.true["lv_mass"]) == pytest.approx(1.05 * 2 * ring * voxel_ml)
    assert all(math.isnan(s.pred[k]) and s.refused[k] == "RV not annotated" for k in CARDIAC_INDICES if k[:2] == "rv")
    # no ED slice with a myocardium (Sunnybrook SC-HF-I-6): no mass, not a mass of 0 g
    samples = volume_samples("t", "ED", 9, annotated=[("lv",)] * 5) + volume_samples("t", "ES", 6)
    (t,) = subject_indices(samples, [x.label for x in samples], CARDIAC, "Sunnybrook", annotated=("lv", "myo"))
    assert math.isnan(t.true["lv_mass"]) and t.refused["lv_mass"] == "myocardium not annotated at ED"
    assert not math.isnan(t.true["lv_edv"])


def test_subjects_without_both_phases_are_left_out_and_the_csv_keeps_its_columns(tmp_path):
    samples = volume_samples("a", "ED", 8) + volume_samples("a", "ES", 5) + volume_samples("b", "ED", 8)
    subjects = subject_indices(samples, [x.label for x in samples], CARDIAC, "D")
    assert [s.subject for s in subjects] == ["a"]
    rows = list(csv.DictReader(io.StringIO(clinical_csv(subjects))))
    assert list(rows[0]) == COLUMNS == ["subject", "domain", "lv_edv_pred", "lv_edv_true", "lv_esv_pred",
                                        "lv_esv_true", "lv_sv_pred", "lv_sv_true", "lv_ef_pred", "lv_ef_true",
                                        "lv_mass_pred", "lv_mass_true", "rv_edv_pred", "rv_edv_true", "rv_esv_pred",
                                        "rv_esv_true", "rv_sv_pred", "rv_sv_true", "rv_ef_pred", "rv_ef_true"]
    assert rows[0]["subject"] == "a" and rows[0]["domain"] == "D"


def test_table_writes_csv_json_plot_and_agreement_beside_the_metrics(tmp_path):
    table = ClinicalTable(CARDIAC)
    samples = [x for k, r in enumerate((9, 10, 8)) for x in volume_samples(f"s{k}", "ED", r)
               + volume_samples(f"s{k}", "ES", r - 3)]
    table.add("site/A", samples, [x.label for x in samples])
    result = {}
    table.write(tmp_path, "metrics_site-A", result)
    assert (tmp_path / "clinical_site-A.csv").is_file() and (tmp_path / "clinical_site-A.json").is_file()
    assert result["clinical"]["site/A"]["indices"]["lv_ef"]["mae"] == 0.0
    assert result["clinical_files"]["plots"] == {"site/A": "bland_altman_site-A/site/A.png"}
    assert (tmp_path / "bland_altman_site-A" / "site" / "A.png").stat().st_size > 1000


def test_markdown_table_and_notes_say_how_many_subjects_miss_an_index():
    from vlsa.report.clinical import clinical_markdown

    samples = volume_samples("a", "ED", 9) + volume_samples("a", "ES", 6) \
        + volume_samples("b", "ED", 9, annotated=[("lv", "rv")] * 5) + volume_samples("b", "ES", 6)
    subjects = subject_indices(samples, [x.label for x in samples], CARDIAC, "D")
    md = clinical_markdown({"clinical": {"D": domain_agreement(subjects)}})
    assert "| D | LV EF | % | 2 | 0.0 | 0.0 | 0.0 to 0.0 | – |" in md  # r needs 3 subjects
    assert "| D | LV mass | g | 1 |" in md
    assert "- D: LV mass not computed for 1 of 2 subjects: myocardium not annotated at ED." in md
    # the agreement of 2 subjects (1 for the mass) is said to be rough, per count (Sunnybrook has 5)
    (few,) = [line for line in md.splitlines() if "fewer than 10 subjects" in line]
    assert few.startswith("- D: fewer than 10 subjects (") and "LV mass on 1" in few and "LV EF" in few


def test_lv_slice_ring_trims_the_predicted_volume_only_and_reads_the_myocardium_before_masking():
    samples = volume_samples("s", "ED", 9) + volume_samples("s", "ES", 6)
    maps = [x.label.copy() for x in samples]
    base = maps[5]  # ES slice 0: the model's LV with no myocardium around it (blood pool above the base)
    base[base == 2] = 0
    (off,) = subject_indices(samples, maps, CARDIAC, "D")
    (on,) = subject_indices(samples, maps, CARDIAC, "D", lv_ring=0.9)
    assert off.pred["lv_esv"] == pytest.approx(off.true["lv_esv"])
    assert on.true["lv_esv"] == pytest.approx(off.true["lv_esv"])  # the reference is never trimmed
    voxel_ml = 8.0 * 1.25 * 1.5 / 1000
    assert off.pred["lv_esv"] - on.pred["lv_esv"] == pytest.approx(disc((32, 32), 6).sum() * voxel_ml)
    assert on.pred["lv_edv"] == pytest.approx(on.true["lv_edv"]) and on.phases["lv_slice_ring"] == 0.9
    # myocardium not annotated on a slice (Sunnybrook) is cleared for scoring, but the rule reads the
    # predicted ring, so a ringed LV there is kept
    regions = [("lv",)] * 5
    samples = volume_samples("t", "ED", 9, annotated=regions) + volume_samples("t", "ES", 6, annotated=regions)
    maps = [heart(9) if x.meta["phase"] == "ED" else heart(6) for x in samples]
    (t,) = subject_indices(samples, maps, CARDIAC, "Sunnybrook", annotated=("lv", "myo"), lv_ring=0.9)
    assert t.pred["lv_edv"] == pytest.approx(disc((32, 32), 9).sum() * 5 * voxel_ml)


def test_a_negative_predicted_ef_is_flagged_but_kept_in_the_agreement(tmp_path, caplog):
    from vlsa.report.clinical import refusal_notes

    samples = volume_samples("good", "ED", 9) + volume_samples("good", "ES", 6) \
        + volume_samples("bad", "ED", 9) + volume_samples("bad", "ES", 6)
    # "bad": the prediction swaps the cavities, its ES LV (radius 9) larger than its ED LV (radius 6)
    maps = [heart(6) if s.case_id == "bad" and s.meta["phase"] == "ED" else
            heart(9) if s.case_id == "bad" else s.label for s in samples]
    good, bad = sorted(subject_indices(samples, maps, CARDIAC, "D"), key=lambda s: s.subject != "good")
    assert not good.flags and bad.pred["lv_ef"] < 0
    assert "outside 0-100 %" in bad.flags["lv_ef"] and "rv_ef" not in bad.flags  # the RV did not change
    stats = domain_agreement([good, bad])
    assert stats["implausible"] == {"lv_ef": ["bad"]} and stats["indices"]["lv_ef"]["n"] == 2  # kept, not hidden
    table = ClinicalTable(CARDIAC)
    with caplog.at_level("WARNING"):
        table.add("site/A", samples, maps)
    assert "LV EF outside 0-100 % for 1 of 2 subjects (bad)" in caplog.text
    result = {}
    table.write(tmp_path, "metrics", result)
    import json

    record = {s["subject"]: s for s in json.loads((tmp_path / "clinical.json").read_text())["subjects"]}
    assert list(record["bad"]["flags"]) == ["lv_ef"] and record["good"]["flags"] == {}
    (note,) = [n for n in refusal_notes(result) if "outside" in n]
    assert note.startswith("site/A: predicted LV EF outside 0-100 % for 1 of 2 subjects (bad)")
