import subprocess
import sys

import pytest

from vlsa.cli import main


def _run(args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vlsa", *args], capture_output=True, text=True, cwd=tmp_path)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--set", "train.stpes=3"], "unknown config key 'train.stpes'"),
        (["train", "--set", "data.root=/nonexistent/x"], "/nonexistent/x: dataset root not found"),
        (["evaluate", "--run", "/nonexistent/run"], "/nonexistent/run: run directory not found"),
        (["verify", "--dataset", "mms", "--root", "."], "no dataset information csv"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(args, message, tmp_path):
    code, out, err = _run(args, tmp_path)
    assert code == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert err.startswith("vlsa: error: ") and message in err


@pytest.mark.parametrize("argv,message", [
    (["train", "--config", "drishti_sdg", "--set", "data.root=/nonexistent/x"],
     "/nonexistent/x: dataset root not found (config key 'data.root')"),
    (["train", "--config", "drishti_sdg", "--set", "data.root=.", "--set", "data.target_datasets.dofe.root=/nonexistent/x"],
     "config key 'data.target_datasets.dofe.root': /nonexistent/x not found"),
    (["protocol", "--config", "drishti_sdg", "--mode", "single-source", "--set", "data.root=/nonexistent/x"],
     "/nonexistent/x: dataset root not found"),
    (["evaluate", "--run", "/nonexistent/run"], "/nonexistent/run: run directory not found"),
    (["predict", "--run", "/nonexistent/run", "--input", "/nonexistent/x.png", "--output", "out"],
     "/nonexistent/x.png: input not found"),
    (["predict", "--run", "/nonexistent/run", "--input", ".", "--output", "out"], "/nonexistent/run: run directory not found"),
    (["predict", "--run", "/nonexistent/run", "--input", "notes.md", "--output", "out"],
     "notes.md: unsupported file type (expected PNG/JPEG/BMP/TIFF, NIfTI or DICOM)"),
    (["diagnose", "--run", "/nonexistent/run"], "/nonexistent/run: run directory not found"),
])
def test_a_mistyped_path_is_reported_before_the_engine_is_imported(argv, message, tmp_path):
    """A new user's mistyped data.root took 12 s to report, behind the torch/MONAI imports (and a
    README.md given to predict 8 s): paths are checked first, so the process ends without having
    imported torch, and writes nothing."""
    (tmp_path / "notes.md").write_text("# a file of another type\n")
    code = f"import sys\nfrom vlsa.cli import main\nrc = main({argv!r})\nprint(rc, 'torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout.split() == ["2", "False"]
    assert message in proc.stderr and proc.stderr.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.md"]  # no run or output folder begun


def test_help_of_every_subcommand(capsys):
    for sub in ("synth", "verify", "train", "evaluate", "predict", "protocol", "demo"):
        with pytest.raises(SystemExit) as exc:
            main([sub, "--help"])
        assert exc.value.code == 0
        assert "usage: vlsa " + sub in capsys.readouterr().out


def test_synth_preview_and_verify(tmp_path, capsys):
    assert main(["synth", "fundus", "--out", str(tmp_path / "f"), "--per-domain", "4", "--size", "48", "--preview"]) == 0
    assert (tmp_path / "f" / "preview.png").is_file()
    assert main(["verify", "--dataset", "fundus", "--root", str(tmp_path / "f")]) == 0
    assert "passed the integrity check" in capsys.readouterr().out


def test_logged_warnings_carry_the_same_prefix_as_printed_ones():
    """A reader's logged warning (e.g. folder slices split on their own) reads `vlsa: warning: ...`,
    as the commands' printed warnings do; --verbose progress lines keep `vlsa: ...`."""
    import logging

    from vlsa.cli import _LevelFormatter

    fmt = _LevelFormatter()
    warn = logging.LogRecord("vlsa.data", logging.WARNING, __file__, 1, "%s: names look like slices", ("a/images",), None)
    info = logging.LogRecord("vlsa.engine", logging.INFO, __file__, 1, "step %d", (10,), None)
    assert fmt.format(warn) == "vlsa: warning: a/images: names look like slices"
    assert fmt.format(info) == "vlsa: step 10"
