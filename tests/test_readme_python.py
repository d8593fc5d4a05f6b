"""README's Python examples run as written: each ```python block under a heading that says
"from Python", in order, in one folder holding the files the section says it expects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DigitsSplit

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(readme: str) -> dict[str, list[str]]:
    """Section title → its ```python blocks, for every section whose title says "from Python"."""
    out: dict[str, list[str]] = {}
    for section in re.split(r"^## ", readme, flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        if "from Python" in title:
            out[title] = re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)
    return out


def test_the_sdk_section_has_examples() -> None:
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks.get("Using the SDK from Python", [])) >= 3


def test_sdk_examples_run_as_written(tmp_path: Path, digits: DigitsSplit, keras_cnn: Path) -> None:
    import keras

    from edge_sdk.passes.quantize.tflite import to_tflite

    (tmp_path / "model.keras").write_bytes(keras_cnn.read_bytes())
    (tmp_path / "model.tflite").write_bytes(to_tflite(keras.models.load_model(keras_cnn)))
    (tmp_path / "train.npz").write_bytes(digits.train.read_bytes())
    (tmp_path / "test.npz").write_bytes(digits.test.read_bytes())
    blocks = python_blocks((ROOT / "README.md").read_text())["Using the SDK from Python"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    outputs = []
    for i, code in enumerate(blocks):
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=900)
        assert run.returncode == 0, f"README block {i + 1} failed:\n{code}\n{run.stderr[-3000:]}"
        outputs.append(run.stdout)
    assert re.search(r"-> [\d,]+ bytes, held-out accuracy \d+\.\d\d% -> \d+\.\d\d%", outputs[0])
    assert (tmp_path / "digits.edgepkg").is_file() and (tmp_path / "digits.report.md").is_file()
    assert re.search(r"accuracy \d+\.\d\d% on 360 samples", outputs[1])
    assert (tmp_path / "digits-signed.edgepkg").is_file() and (tmp_path / "release.key.pub").is_file()
    assert "bundle:" in outputs[2] and (tmp_path / "packed.edgepkg").is_file()


@pytest.mark.parametrize("bad", ["no-such.keras", 3.5])
def test_optimize_refuses_bad_models_in_one_line(tmp_path: Path, digits: DigitsSplit, bad: object) -> None:
    import edge_sdk

    with pytest.raises(edge_sdk.EdgeError) as e:
        edge_sdk.optimize(bad, digits.train, out=tmp_path / "x.edgepkg")  # type: ignore[arg-type]
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x.edgepkg").exists()


def test_optimize_takes_models_and_data_in_memory(tmp_path: Path, digits: DigitsSplit, keras_cnn: Path) -> None:
    import keras

    import edge_sdk

    model = keras.models.load_model(keras_cnn)
    report = edge_sdk.optimize(model, (digits.x_train, digits.y_train), out=tmp_path / "mem.edgepkg",
                               eval_data=edge_sdk.Dataset(digits.x_test, digits.y_test, "test split"),
                               recipe=edge_sdk.make_recipe(int8=True, runs=3))
    assert report.source.startswith("keras.Model")
    assert report.held_out is not None and report.held_out.source == "--eval-data test split"
    assert report.comparisons[0].optimized.accuracy > 90.0
    assert (tmp_path / "mem.report.json").is_file()


def test_public_names_resolve_without_loading_tensorflow() -> None:
    code = ("import sys, edge_sdk\n"
            "names = [n for n in edge_sdk.__all__ if not callable(getattr(edge_sdk, n)) and n != '__version__']\n"
            "print(names, [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')])\n")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[] []"
