"""Image folders as people have them (8-bit PNGs, another size): preprocessing flags go
into the manifest, host and device apply them alike, and a data range that does not
match the calibration is said."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from device_agent.bundle import read_manifest
from device_agent.preprocess import Pipeline
from edge_sdk.cli import app
from tests.conftest import DigitsSplit

runner = CliRunner()


def pngs(root: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Digits as 16x16 8-bit grayscale PNGs (each pixel doubled), one folder per class."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        d = root / str(int(label))
        d.mkdir(parents=True, exist_ok=True)
        big = np.repeat(np.repeat(img[..., 0], 2, axis=0), 2, axis=1)
        Image.fromarray(np.round(big * 255).astype(np.uint8), mode="L").save(d / f"{i}.png")
    return root


def accuracy(out: str) -> float:
    line = next(x for x in out.splitlines() if x.startswith("accuracy:"))
    return float(line.split()[1].rstrip("%"))


@pytest.fixture(scope="module")
def folders(digits: DigitsSplit, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pngs")
    return pngs(root / "train", digits.x_train, digits.y_train), pngs(root / "test", digits.x_test, digits.y_test)


def test_preprocessing_flags_make_png_folders_score_like_the_npz(keras_cnn: Path, digits: DigitsSplit,
                                                                 folders: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = folders
    plain = tmp_path / "plain.edgepkg"
    res = runner.invoke(app, ["optimize", str(keras_cnn), "--data", str(digits.train), "--int8", "--runs", "2",
                              "--samples", "64", "-o", str(plain)])
    assert res.exit_code == 0, res.output
    on_npz = accuracy(runner.invoke(app, ["eval", str(plain), "--data", str(digits.test)]).output)
    # The same bundle on raw 0..255 pixels of another size: refused or said, never silent.
    res = runner.invoke(app, ["eval", str(plain), "--data", str(test)])
    assert res.exit_code == 2 and "(16, 16, 1)" in res.output

    imgs = tmp_path / "images.edgepkg"
    res = runner.invoke(app, ["optimize", str(keras_cnn), "--data", str(train), "--eval-data", str(test),
                              "--resize", "8x8", "--scale", "1/255", "--int8", "--runs", "2", "--samples", "64",
                              "-o", str(imgs)])
    assert res.exit_code == 0, res.output
    steps = read_manifest(imgs).preprocessing
    assert [s["op"] for s in steps] == ["resize", "scale"]
    on_png = accuracy(runner.invoke(app, ["eval", str(imgs), "--data", str(test)]).output)
    assert on_png >= on_npz - 3.0, (on_png, on_npz)
    # Host and device compute the same thing: the manifest's steps on one PNG give the npz sample.
    from PIL import Image

    one = next((test / "3").iterdir())
    raw = np.asarray(Image.open(one), dtype=np.float32)
    want = digits.x_test[int(one.stem)][..., 0]
    np.testing.assert_allclose(Pipeline.parse(steps)(raw), want, atol=0.5 / 255 + 1e-6)  # 8-bit rounding


def test_eval_warns_when_data_is_not_in_the_calibrated_range(keras_cnn: Path, digits: DigitsSplit,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "d.edgepkg"
    res = runner.invoke(app, ["optimize", str(keras_cnn), "--data", str(digits.train), "--runs", "2",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    raw = tmp_path / "raw.npz"
    np.savez(raw, x=np.round(digits.x_test * 255), y=digits.y_test)
    res = runner.invoke(app, ["eval", str(out), "--data", str(raw)])
    assert res.exit_code == 0
    assert "warning: the data's values span 0..255, but the model was calibrated on 0..1" in res.output
    res = runner.invoke(app, ["eval", str(out), "--data", str(digits.test)])
    assert "warning" not in res.output


def test_image_steps() -> None:
    rgb = np.random.default_rng(0).random((4, 6, 3), dtype=np.float32)
    steps = Pipeline.parse([{"op": "channels", "order": "bgr"}, {"op": "layout", "to": "chw"}])
    np.testing.assert_array_equal(steps(rgb), rgb[..., ::-1].transpose(2, 0, 1))
    gray = Pipeline.parse([{"op": "grayscale"}])(rgb)
    assert gray.shape == (4, 6, 1)
    np.testing.assert_allclose(gray[..., 0], rgb @ np.array([0.299, 0.587, 0.114], np.float32), rtol=1e-6)
