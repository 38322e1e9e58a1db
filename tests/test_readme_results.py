"""The README's results block is generated from the committed benchmark results, never typed by hand."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "readme_results.py"


def test_readme_results_block_matches_committed_results():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_check_detects_a_hand_edited_number(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    subprocess.run([sys.executable, str(SCRIPT), "--readme", str(readme)], check=True)
    current = readme.read_text()
    start = current.index("<!-- results:start")
    readme.write_text(current[:start] + current[start:].replace("Headline numbers:", "Headline numbers (edited):", 1))
    done = subprocess.run([sys.executable, str(SCRIPT), "--check", "--readme", str(readme)], capture_output=True, text=True)
    assert done.returncode == 1 and "stale" in done.stderr
    subprocess.run([sys.executable, str(SCRIPT), "--readme", str(readme)], check=True)
    assert readme.read_text() == current
