"""``edge pack``: a model that is already converted (.tflite/.onnx) → a signed bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edge_sdk.cli._common import BGR, GRAYSCALE, LAYOUT, MEAN, RESIZE, SCALE, STD, cli_errors, print_json

if TYPE_CHECKING:
    from edge_sdk.bundle.pack import PackSpec


def register(app: typer.Typer) -> None:
    """Add ``edge pack`` to ``app``."""
    app.command("pack")(pack)


@cli_errors
def pack(
    model: Path = typer.Argument(..., help="A .tflite or .onnx file, from anywhere"),
    out: Path = typer.Option(..., "-o", "--out", help="The bundle to write (NAME.edgepkg)"),
    key: Path | None = typer.Option(None, "--key", help="Sign with this Ed25519 private key"),
    spec: Path | None = typer.Option(None, "--spec", help="A TOML file with the settings below "
                                     "(labels, output_kind, preprocessing, constants, [detection]); "
                                     "flags override it"),
    name: str | None = typer.Option(None, "--name", help="Model name (default: bundle file name)"),
    version: str | None = typer.Option(None, "--bundle-version", metavar="SEMVER",
                                       help="Semantic version of the bundle (default 0.1.0)"),
    labels: str | None = typer.Option(None, "--labels", help="Class names: a,b,c or a file, one per line"),
    output_kind: str | None = typer.Option(
        None, "--output-kind", help="classifier (default), raw, regression or detection"),
    boxes: str | None = typer.Option(None, "--boxes", help="Detection: the output holding boxes [N,4]"),
    scores: str | None = typer.Option(None, "--scores", help="Detection: the output holding scores"),
    classes: str | None = typer.Option(None, "--classes", help="Detection: an output of class ids"),
    score_threshold: float | None = typer.Option(None, "--score-threshold", help="Detection: keep scores ≥ this"),
    nms_iou: float | None = typer.Option(None, "--nms-iou", help="Detection: suppress overlaps above this IoU"),
    constant: list[str] = typer.Option([], "--constant", help="Fix an input: NAME=VALUE[,VALUE...]"),
    state: list[str] = typer.Option(
        [], "--state", help="Carry an output into an input on the next reading of a stream: OUTPUT=INPUT"),
    state_reset_after: float | None = typer.Option(
        None, "--state-reset-after", help="Reset a stream's state after this many silent seconds"),
    data: Path | None = typer.Option(
        None, "--data", help="Sample inputs: .npz with one array per input name (or x), CSV or image "
        "folder. Recorded as the validation set (and int8 calibration)"),
    resize: str | None = RESIZE,
    scale: str | None = SCALE,
    mean: str | None = MEAN,
    std: str | None = STD,
    grayscale: bool = GRAYSCALE,
    bgr: bool = BGR,
    layout: str | None = LAYOUT,
    int8: bool = typer.Option(False, "--int8", help="ONNX: static int8 post-training quantization on --data"),
    validation_samples: int | None = typer.Option(
        None, "--validation-samples", min=1, help="Samples to keep (default: up to 10 percent of the model's bytes)"),
    compress: str = typer.Option("none", "--compress", help="Store the model compressed: none, xz, deflate or zstd"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Wrap MODEL into a bundle that inspect, bench, eval, sign, deploy and edge-agent take."""
    from dataclasses import asdict

    from edge_sdk.bundle.pack import PackSpec, default_name, spec_from_toml
    from edge_sdk.bundle.pack import pack as run
    from edge_sdk.model.preprocess import steps_from_flags

    fields: dict[str, Any] = spec_from_toml(spec) if spec is not None else {}
    fields.setdefault("name", default_name(out))
    det = dict(fields.get("detection", {}))
    for k, v in (("boxes", boxes), ("scores", scores), ("classes", classes),
                 ("score_threshold", score_threshold), ("nms_iou", nms_iou)):
        if v is not None:
            det[k] = v
    fields["detection"] = det
    consts = dict(fields.get("constants", {}))
    consts.update(_constants(constant))
    fields["constants"] = consts
    maps = [dict(d) for d in fields.get("state", ())] + _state(state)
    if state_reset_after is not None:
        for d in maps:
            d["reset_after_s"] = state_reset_after
    fields["state"] = tuple(maps)
    for k, v in (("name", name), ("version", version), ("output_kind", output_kind),
                 ("validation_samples", validation_samples), ("compression", compress)):
        if v is not None:
            fields[k] = v
    if labels is not None:
        fields["labels"] = _labels(labels)
    steps = steps_from_flags(resize=resize, scale=scale, mean=mean, std=std, grayscale=grayscale, bgr=bgr,
                             layout=layout)
    if steps:  # the flags replace the TOML file's steps
        fields["preprocessing"] = steps
    if int8:
        fields["int8"] = True
    result = run(model, out, _spec(PackSpec, fields), data=data, key=key)
    if as_json:
        print_json(asdict(result))
        return
    for line in result.lines():
        typer.echo(line)


def _spec(cls: type[PackSpec], fields: dict[str, Any]) -> PackSpec:
    from device_agent.errors import EdgeError
    from device_agent.protocol.manifest import Compression, OutputKind

    try:
        fields["output_kind"] = OutputKind(fields.get("output_kind", "classifier"))
    except ValueError:
        raise EdgeError(f"--output-kind {fields['output_kind']!r}: expected classifier, raw, "
                        "regression or detection") from None
    try:
        fields["compression"] = Compression(fields.get("compression", "none"))
    except ValueError:
        raise EdgeError(f"--compress {fields['compression']!r}: expected none, xz, deflate or zstd") from None
    if fields["output_kind"] != OutputKind.DETECTION and any(
            k in fields["detection"] for k in ("boxes", "scores", "classes")):
        raise EdgeError("--boxes/--scores/--classes need --output-kind detection")
    fields["labels"] = tuple(str(v) for v in fields.get("labels", ()))
    fields["preprocessing"] = tuple(dict(s) for s in fields.get("preprocessing", ()))
    return cls(**fields)


def _labels(value: str) -> tuple[str, ...]:
    p = Path(value)
    if p.is_file():
        return tuple(line.strip() for line in p.read_text().splitlines() if line.strip())
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _state(options: list[str]) -> list[dict[str, Any]]:
    from device_agent.errors import EdgeError

    out = []
    for opt in options:
        output, eq, inp = opt.partition("=")
        if not eq or not output or not inp:
            raise EdgeError(f"--state {opt!r}: expected OUTPUT=INPUT (e.g. stateN=state)")
        out.append({"output": output, "input": inp})
    return out


def _constants(options: list[str]) -> dict[str, list[float]]:
    from device_agent.errors import EdgeError

    out = {}
    for opt in options:
        name, eq, values = opt.partition("=")
        try:
            if not eq or not name:
                raise ValueError
            out[name] = [float(v) for v in values.split(",")]
        except ValueError:
            raise EdgeError(f"--constant {opt!r}: expected NAME=VALUE[,VALUE...]") from None
    return out
