"""The bundle's validation set: narrowest exact dtype, bounded in bytes, replayed by name."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from device_agent.bundle import read_manifest
from device_agent.protocol.validation import sample_budget, smallest_exact
from edge_sdk.cli import app
from tests.byom.conftest import Byom

runner = CliRunner()


def test_smallest_exact_dtype_gives_back_the_same_values() -> None:
    pixels = np.arange(256, dtype=np.float32).reshape(16, 16)
    assert smallest_exact(pixels).dtype == np.uint8
    sixteenths = (np.arange(17, dtype=np.float32) / 16).reshape(1, 17)
    assert smallest_exact(sixteenths).dtype == np.float16
    noise = np.random.default_rng(0).random((4, 4), dtype=np.float32)
    assert smallest_exact(noise).dtype == np.float32
    assert smallest_exact(np.array([16000, 8000], np.int64)).dtype.itemsize == 2
    for a in (pixels, sixteenths, noise):
        np.testing.assert_array_equal(smallest_exact(a).astype(np.float32), a)


def test_sample_budget_is_a_tenth_of_the_model_and_at_least_one() -> None:
    assert sample_budget(100, 10_000) == 10
    assert sample_budget(55_296, 64_000) == 1  # one 3x48x192 float16 sample is over 10%: still one


def test_pack_keeps_what_fits_and_says_how_many(byom: Byom, tmp_path: Path) -> None:
    out = tmp_path / "seg.edgepkg"
    res = runner.invoke(app, ["pack", str(byom.segmenter), "-o", str(out), "--output-kind", "raw",
                              "--data", str(byom.images)])
    assert res.exit_code == 0, res.output
    m = read_manifest(out)
    model_bytes = m.files[0].size
    with tarfile.open(out) as t:
        member = t.extractfile("validation.npz").read()  # type: ignore[union-attr]
    with np.load(io.BytesIO(member)) as z:
        kept = len(z["in." + m.inputs[0].name])
    assert kept == max(1, int(0.1 * model_bytes) // (16 * 16 * 3 * 4)) < 6
    assert f"validation:  {kept} of 6 samples" in res.output
    assert m.optimization["validation"] == f"{kept} of 6 samples from images.npz"
    res = runner.invoke(app, ["pack", str(byom.segmenter), "-o", str(tmp_path / "all.edgepkg"),
                              "--output-kind", "raw", "--data", str(byom.images), "--validation-samples", "6"])
    assert res.exit_code == 0 and "validation:  6 of 6 samples" in res.output
