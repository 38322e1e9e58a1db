"""`vlsa predict` sends 2D images through the model in batches of eval.batch_size, same labels as one by one."""

import numpy as np
from PIL import Image

from tests.conftest import tiny_overrides
from vlsa.config import build_config
from vlsa.engine.predict import Predictor, predict_paths
from vlsa.engine.train import train


def test_predict_batches_images_and_matches_one_by_one(fundus_root, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(build_config({}, [*tiny_overrides(fundus_root, steps=2), "eval.batch_size=2"]), run, quiet=True)
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(40, 52, 3), (33, 33, 3), (64, 48, 3)]):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(inputs / f"eye_{i}.png")
    seen = []
    original = Predictor._labels
    monkeypatch.setattr(Predictor, "_labels", lambda self, planes: seen.append(len(planes)) or original(self, planes))
    written = predict_paths(run, [str(inputs)], tmp_path / "out", quiet=True)
    assert seen == [2, 1]  # three files, batch size 2
    assert [p.name for p in written] == ["eye_0.png", "eye_1.png", "eye_2.png"]
    single = Predictor(run)
    for path, out in zip(sorted(inputs.iterdir()), written):
        _, labels = single.predict_image(path)
        assert np.array_equal(np.asarray(Image.open(out)), labels)


def test_a_bad_input_leaves_nothing_in_the_output_folder(fundus_root, tmp_path):
    """One good and one truncated image: `vlsa predict` fails naming the bad file and writes none of
    the predictions (they are staged and moved in only when every input is done)."""
    import pytest

    from vlsa.errors import DataError

    run = tmp_path / "run"
    train(build_config({}, tiny_overrides(fundus_root, steps=2)), run, quiet=True)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(inputs / "a.png")
    good = (inputs / "a.png").read_bytes()
    (inputs / "b.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    with pytest.raises(DataError, match="b.png"):
        predict_paths(run, [str(inputs)], out, quiet=True)
    assert not out.exists()  # created by the call, so removed with it
    out.mkdir()
    (out / "kept.txt").write_text("a user's file")
    with pytest.raises(DataError, match="b.png"):
        predict_paths(run, [str(inputs)], out, quiet=True)
    assert [p.name for p in out.iterdir()] == ["kept.txt"]
    (inputs / "b.png").unlink()
    assert [p.name for p in predict_paths(run, [str(inputs)], out, quiet=True)] == ["a.png"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "kept.txt"]
