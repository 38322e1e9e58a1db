"""The real public datasets (../shared/realdata) must never enter git: licences are research-use, and
a fixture copied from them would be tested against itself. Tests write their own files in the formats."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_no_file_of_the_real_data_is_tracked(realdata):
    import hashlib

    sums = {line.split()[0] for line in (realdata / "SHA256SUMS").read_text().splitlines() if line.strip()}
    copies = [f for f in tracked() if (ROOT / f).is_file()
              and hashlib.sha256((ROOT / f).read_bytes()).hexdigest() in sums]
    assert copies == [], f"tracked copies of ../shared/realdata files: {copies}"


def test_real_data_names_are_ignored():
    names = ["realdata/x.png", "drishtiGS_002.jpg", "patient001_frame01.h5", "SCD0000101/48.dcm"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=ROOT, capture_output=True, text=True)
    assert sorted(out.stdout.split()) == sorted(names)
