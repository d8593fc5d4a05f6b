"""``edge optimize --max-drop P`` alone: the searched recipe, through the CLI, on real runtimes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from device_agent.bundle import open_bundle
from device_agent.protocol.manifest import ModelFormat
from edge_sdk.cli import app

STEP_FIELDS = {"step", "accuracy", "params", "macs", "bytes", "compressed_bytes", "latency_p50_ms", "note"}


def _run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_search_beats_int8_only_within_budget(keras_cnn: Path, digits: Any, tmp_path: Path) -> None:
    common = ("--data", digits.train, "--eval-data", digits.test, "--int8", "--runs", "3", "--json")
    searched, plain = tmp_path / "searched.edgepkg", tmp_path / "plain.edgepkg"
    res = _run("optimize", keras_cnn, *common, "--max-drop", "1.0", "-o", searched)
    assert res.exit_code == 0, res.output
    base = _run("optimize", keras_cnn, *common, "--max-drop", "1.0", "--compress", "zstd", "-o", plain,
                "--no-search")
    assert base.exit_code == 0, base.output
    rep = json.loads((tmp_path / "searched.report.json").read_text())
    steps = rep["steps"]
    print("\n".join(str(s) for s in steps), searched.stat().st_size, plain.stat().st_size)
    # smaller than the int8-only bundle even when that one is zstd-compressed too
    assert searched.stat().st_size < 0.7 * plain.stat().st_size
    assert json.loads(base.stdout)["recipe"]["passes"] == []
    # the measured drop of the whole recipe (int8 included) stays within the budget
    total = steps[0]["accuracy"] - steps[-1]["accuracy"]
    assert steps[-1]["step"] == "int8 tflite" and total <= 1.0
    assert rep["recipe"]["total_drop_points"]["tflite"] <= 1.0 and rep["recipe"]["max_drop_covers"] == "every step"
    names = [s["step"] for s in steps]
    assert names[0] == "baseline" and "share" in names and names[1:-2] == rep["recipe"]["passes"]
    for s in steps:  # every step: parameters, MACs, raw and compressed bytes, accuracy, latency
        assert set(s) == STEP_FIELDS
        assert s["bytes"] > 0 and s["compressed_bytes"] > 0 and s["latency_p50_ms"] > 0, s
    share = names.index("share")
    assert steps[share]["compressed_bytes"] < 0.5 * steps[share]["bytes"]  # clustered kernels compress
    assert steps[-1]["params"] < steps[0]["params"] or rep["recipe"]["search_result"]["clusters"] is not None
    md = (tmp_path / "searched.report.md").read_text()
    assert "| compressed bytes | latency p50 ms |" in md and "| share |" in md
    b = open_bundle(searched, tmp_path / "b")
    assert b.manifest.optimization["recipe"]["passes"] == rep["recipe"]["passes"]
    # the manifest carries the chosen row and the count; every row stays in the report
    shipped = b.manifest.optimization["recipe"]["search_result"]
    found = rep["recipe"]["search_result"]
    assert "candidates" not in shipped and shipped["candidates_judged"] == len(found["candidates"])
    assert shipped["chosen_row"]["index"] == found["chosen_index"] == shipped["chosen_index"]
    _front_is_kept_and_another_point_ships(rep, searched, keras_cnn, digits, tmp_path)


def _front_is_kept_and_another_point_ships(rep: dict[str, Any], searched: Path, keras_cnn: Path,
                                           digits: Any, tmp_path: Path) -> None:
    found = rep["recipe"]["search_result"]
    assert found["kind"] == "shipped" and found["chosen_index"] in found["front"]
    # every candidate was judged as it ships: int8 (a quarter of the float bytes) and compressed
    assert all(c["bytes"] < rep["steps"][0]["bytes"] / 3 for c in found["candidates"])
    md = (tmp_path / "searched.report.md").read_text()
    assert "## Search candidates" in md and f"\n>{found['chosen_index']:>3}  " in md
    folder = tmp_path / "searched.candidates"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{i}.tflite" for i in found["front"]] + ["index.json"])
    rows = {c["index"]: c for c in found["candidates"]}
    budget = rep["recipe"]["max_drop_points"]
    other = next((i for i in found["front"] if i != found["chosen_index"] and rows[i]["drop_points"] <= budget),
                 None)
    if other is None:
        return
    worse = next((i for i in found["front"] if rows[i]["drop_points"] > 0), None)
    if worse is not None:  # over the budget given: refused, the searched bundle untouched
        before = searched.read_bytes()
        res = _run("optimize", keras_cnn, "--data", digits.train, "-o", searched, "--pick", worse,
                   "--max-drop", 0)
        assert res.exit_code == 2 and "error: --pick: pick costs" in res.output, res.output
        assert searched.read_bytes() == before
    changed = tmp_path / "changed.keras"
    changed.write_bytes(keras_cnn.read_bytes() + b"\0")
    res = _run("optimize", changed, "--data", digits.train, "-o", searched, "--pick", other)
    assert res.exit_code == 2 and "was searched from another model than" in res.output, res.output
    res = _run("optimize", keras_cnn, "--data", digits.train, "-o", searched, "--pick", other, "--runs", 2)
    assert res.exit_code == 0, res.output
    assert f"picked candidate #{other} ({rows[other]['label']})" in " ".join(res.output.split())
    picked = open_bundle(searched, tmp_path / "picked")
    assert picked.manifest.optimization["recipe"]["picked"]["index"] == other
    assert picked.validation_path is not None  # the device's health check has samples to replay
    (f,) = picked.manifest.stage_files(ModelFormat.TFLITE)
    assert f.raw_size == (folder / f"{other}.tflite").stat().st_size
    # the report is the picked bundle's, with its held-out figures, not the search's left behind
    again = json.loads((tmp_path / "searched.report.json").read_text())
    assert again["recipe"]["picked"]["index"] == other and again["steps"][-1]["step"] == "pick tflite"
    assert again["held_out"]["drops"]["tflite"]["samples"] == rep["held_out"]["drops"]["tflite"]["samples"]
    assert again["shipped_bytes"]["bundle"] == searched.stat().st_size
    bad = _run("optimize", keras_cnn, "--data", digits.train, "-o", searched, "--pick", 999)
    assert bad.exit_code == 2 and "--pick 999: not on the front" in bad.output


def test_printed_table_lists_steps(keras_cnn: Path, digits: Any, tmp_path: Path) -> None:
    out = tmp_path / "t.edgepkg"
    res = _run("optimize", keras_cnn, "--data", digits.train, "--eval-data", digits.test, "--prune", "0.25",
               "--max-drop", "10", "--runs", "3", "--no-step-metrics", "-o", out)
    assert res.exit_code == 0, res.output
    assert "after each step" in res.output and "compressed" in res.output
    rep = json.loads((tmp_path / "t.report.json").read_text())
    prune = next(s for s in rep["steps"] if s["step"] == "prune")
    assert prune["compressed_bytes"] is None and prune["latency_p50_ms"] is None  # explicitly skipped
    assert prune["bytes"] is None and rep["steps"][0]["bytes"] is None  # not 0, not the .keras file's
    assert rep["recipe"]["search"] is None and rep["recipe"]["max_drop_covers"] == "every step"


def test_negative_budget_and_conflicting_flags(keras_cnn: Path, digits: Any, tmp_path: Path) -> None:
    out = tmp_path / "bad.edgepkg"
    res = _run("optimize", keras_cnn, "--data", digits.train, "--max-drop", "-0.5", "-o", out)
    assert res.exit_code == 2 and "--max-drop must be >= 0 points, got -0.5" in res.output
    res = _run("optimize", keras_cnn, "--data", digits.train, "--search", "--prune", "0.3", "-o", out)
    assert res.exit_code == 2 and "leave out --prune/--share/--lowrank" in res.output
    assert not out.exists() and not (tmp_path / "bad.report.json").exists()


def test_onnx_search_is_refused(cnn_onnx: Path, digits: Any, tmp_path: Path) -> None:
    # --max-drop alone bounds an ONNX model's post-training steps (tests/byom); the Keras
    # search, asked for by name, is refused.
    out = tmp_path / "o.edgepkg"
    res = _run("optimize", cnn_onnx, "--data", digits.train, "--search", "--max-drop", "0.5", "-o", out)
    assert res.exit_code == 2 and "search needs a Keras model" in res.output
    assert not out.exists()
