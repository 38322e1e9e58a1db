"""The generated blocks of README.md and docs/benchmarks.md come from the committed benchmark
results, never typed by hand; real data goes first where benchmarks/results/dg_real.json exists."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "readme_results.py"
RESULTS = ROOT / "benchmarks" / "results"
NAN = float("nan")


def run(*args, check=False):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=check)


def copy_tree(tmp_path, with_real: bool) -> tuple[Path, Path]:
    """A repository's README.md and docs/benchmarks.md, and a results folder, under tmp_path."""
    root, results = tmp_path / "repo", tmp_path / "results"
    (root / "docs").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copy(ROOT / "docs" / "benchmarks.md", root / "docs" / "benchmarks.md")
    results.mkdir()
    for name in ("dg_synthetic.json", "speed_cpu.json", "demo_table.txt"):
        shutil.copy(RESULTS / name, results / name)
    if with_real:
        (results / "dg_real.json").write_text(json.dumps(fake_real(), allow_nan=True))
        (results / "dg_real.md").write_text("# Single-source DG on real data\n\n![plot](dg_real.png)\n\n## fundus: x\n\nrows\n")
    return root, results


def _row(seeds, unseen, source, classes, units):
    row = {"seeds": seeds, "unseen_dice": unseen, "unseen_dice_std": 0.01 if len(seeds) > 1 else NAN,
           "source_dice": source, "source_dice_std": NAN, "unseen_hd95": 5.0, "train_seconds": 100.0,
           "units": {"unseen_dice": units, "unseen_hd95": {}}}
    for c, v in classes.items():
        row[f"unseen_dice_{c}"], row[f"unseen_dice_{c}_std"] = v, NAN
    return row


def fake_real(methods=None) -> dict:
    """dg_real.json's shape (benchmarks/dg_real.py write_results): fundus and cardiac, their sim-to-real
    settings, RV not annotated on the cardiac target, paired units per (seed, case)."""
    methods = methods or ["ERM U-Net + colour aug", "VLSA", "VLSA w/o EM"]
    cases = [f"s{s}/t/c{i}" for s in (0, 1) for i in range(3)]
    table = {}
    for setting, classes in (("fundus", {"disc": 0.9, "cup": 0.7}), ("cardiac", {"lv": 0.85, "myo": 0.6, "rv": NAN}),
                             ("fundus-sim", {"disc": 0.8, "cup": 0.5})):
        table[setting] = {}
        for k, m in enumerate(methods):
            shift = 0.05 * k
            units = {c: 0.7 + shift + 0.001 * i for i, c in enumerate(cases)}
            table[setting][m] = _row([0, 1], 0.70 + shift, 0.93, classes, units)
    target = {"fundus": {"method": "VLSA", "best_baseline": "ERM U-Net + colour aug", "margin": 0.05, "target": 0.03,
                         "met": True, "seeds": [0, 1], "baseline_seeds": [0, 1],
                         "paired": {"n": 6, "mean": 0.05, "ci_low": 0.049, "ci_high": 0.051, "better": True}}}
    return {"provenance": {"date": "2030-01-02T00:00:00+00:00"}, "reference": "ERM U-Net + colour aug",
            "budgets": {s: {"steps": 600, "image size": 96, "batch": 8, "lr": 0.002} for s in table},
            "table": table, "target": target, "not_run": {"nnU-Net v2": "not run here"}}


def block(text: str, name: str) -> str:
    start = text.index(f"<!-- {name}:start")
    return text[start:text.index(f"<!-- {name}:end -->", start)]


def test_readme_and_docs_blocks_match_committed_results():
    done = run("--check")
    assert done.returncode == 0, done.stderr


def test_check_detects_a_hand_edited_number(tmp_path):
    root, results = copy_tree(tmp_path, with_real=False)
    run("--root", root, "--results", results, check=True)
    page = root / "docs" / "benchmarks.md"
    current = page.read_text()
    start = current.index("<!-- results-synthetic:start")
    page.write_text(current[:start] + current[start:].replace("Headline numbers:", "Headline numbers (edited):", 1))
    done = run("--check", "--root", root, "--results", results)
    assert done.returncode == 1 and "stale" in done.stderr and "benchmarks.md" in done.stderr
    run("--root", root, "--results", results, check=True)
    assert page.read_text() == current


def test_real_data_comes_first_one_table_per_dataset(tmp_path):
    root, results = copy_tree(tmp_path, with_real=True)
    run("--root", root, "--results", results, check=True)
    readme = block((root / "README.md").read_text(), "results")
    real, synthetic = readme.index("**Real data**"), readme.index("**Synthetic benchmarks**")
    assert real < synthetic
    fundus, cardiac = readme.index("*Fundus: "), readme.index("*Cardiac MRI: ")
    assert real < fundus < cardiac < synthetic  # one table per dataset; fundus-sim is a column of fundus
    assert readme.count("| method | seeds | same-site Dice |") == 2
    fundus_table = readme[fundus:cardiac]
    assert "synthetic fundus -> real fundus: real Dice |" in fundus_table  # dg_real.py's title of the sim setting
    assert "| VLSA | 2 | 0.930 | **0.750 ± 0.010** | 0.900 / 0.700 | +0.050 [+0.050, +0.050] better | 0.750 ± 0.010 (2 seeds) |" \
        in fundus_table  # a sim-to-real cell of fewer than 3 seeds says how many
    assert "| ERM U-Net + colour aug | 2 |" in fundus_table and "reference" in fundus_table
    assert "VLSA w/o EM" not in readme  # ablations are left to docs/benchmarks.md
    assert "margin +0.050 over ERM U-Net + colour aug → **met**" in fundus_table
    cardiac_table = readme[cardiac:synthetic]
    assert "unseen LV / MYO |" in cardiac_table and "RV" not in cardiac_table.split("\n|---")[0].split("\n")[-1]
    assert "Not run: nnU-Net v2 ([why](docs/benchmarks.md#real-data))." in " ".join(readme.split())  # wrapped
    # the docs page embeds dg_real.md, its links re-pointed from benchmarks/results/ to docs/
    docs = block((root / "docs" / "benchmarks.md").read_text(), "results-real")
    assert "![plot](../benchmarks/results/dg_real.png)" in docs and "### fundus: x" in docs
    assert "# Single-source DG on real data" not in docs
    assert run("--check", "--root", root, "--results", results).returncode == 0


def test_without_real_results_the_readme_says_so(tmp_path):
    root, results = copy_tree(tmp_path, with_real=False)
    run("--root", root, "--results", results, check=True)
    readme = block((root / "README.md").read_text(), "results")
    assert "no results committed yet" in readme and "| method | seeds | same-site Dice |" not in readme
    assert readme.index("**Real data**") < readme.index("**Synthetic benchmarks**")


def test_readme_stays_within_200_lines_with_every_real_method_run(tmp_path):
    """The lead regenerates the README when the full real benchmark lands: every method of dg_real.py
    in both settings (and their sim-to-real columns) must still fit the README's 200 lines."""
    sys.path.insert(0, str(SCRIPT.parent))
    import dg_real

    methods = [*dg_real.METHODS, *dg_real.DERIVED]  # its rows, the nnU-Net row and the derived rows
    assert len(methods) >= 8 and "nnU-Net v2 w/o post-processing" in methods
    root, results = copy_tree(tmp_path, with_real=True)
    real = fake_real(methods)
    real["not_run"] = {}
    real["table"]["cardiac-sim"] = real["table"]["cardiac"]
    real["kinds"] = {m: dg_real.row_kind(m) for m in methods}  # as dg_real.json records them
    (results / "dg_real.json").write_text(json.dumps(real))
    run("--root", root, "--results", results, check=True)
    lines = (root / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md would have {len(lines)} lines with the full real-data table"
    committed = (ROOT / "README.md").read_text().splitlines()
    assert len(committed) <= 200, f"README.md has {len(committed)} lines"
    assert sum(line.startswith("| VLSA (medsam) |") for line in lines) == 2  # a row in both dataset tables


def test_the_readme_keeps_one_row_per_backbone_and_leaves_variants_and_ablations_to_the_docs():
    sys.path.insert(0, str(SCRIPT.parent))
    import readme_results

    assert readme_results.in_readme("VLSA (medsam)") and readme_results.in_readme("ERM U-Net + RandConv")
    assert not readme_results.in_readme("VLSA (medsam, decoder 64)")
    assert not readme_results.in_readme("VLSA w/o EM") and not readme_results.in_readme("VLSA + RandConv")
    # a row scored with post-processing off is the same runs again: docs only, for a baseline too
    assert readme_results.in_readme("nnU-Net v2", kind="baseline")
    assert not readme_results.in_readme("nnU-Net v2 w/o post-processing", kind="baseline")
    # dg_real.json's recorded kind decides over the name
    assert readme_results.in_readme("VLSA, tuned", kind="vlsa") and not readme_results.in_readme("VLSA", kind="variant")
    packaged = next(iter(readme_results.PACKAGED.items()), None)
    if packaged:  # the packaged default is shown even when it is an ablation's name
        assert readme_results.in_readme(packaged[1], packaged[0])
