"""``edge eval``: top-1 accuracy of a model or bundle on labelled data (and, for an
early-exit bundle, how many inputs left at each exit)."""

from __future__ import annotations

from pathlib import Path

import typer

from edge_sdk.cli._common import cli_errors, print_json


def register(app: typer.Typer) -> None:
    """Add ``edge eval`` to ``app``."""
    app.command("eval")(eval_artifact)


@cli_errors
def eval_artifact(
    artifact: Path = typer.Argument(..., help="A .tflite, .onnx, .edgepkg, .keras/.h5 or SavedModel"),
    data: Path = typer.Option(
        None, "--data", help="Labelled data: .npz (x, y; or one array per input name, y), CSV or image "
        "folder (default: a bundle's own)"
    ),
    reference: Path = typer.Option(
        None, "--reference", help="Another model: report how often both pick the same class"
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Samples per call"),
    runtime: str = typer.Option(None, "--runtime", help="Force a runtime (litert, onnxruntime, ...)"),
    threads: int = typer.Option(None, "--threads", min=1, help="Runtime threads"),
    exit_threshold: list[str] = typer.Option(
        [], "--exit-threshold", help="Early-exit threshold in [0,1] for every exit, or STAGE:VALUE"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Top-1 accuracy and error rate on DATA; with --reference, agreement with that model.

    Models run through the device agent's engine: a bundle's preprocessing steps and
    early-exit cascade apply, and the inputs answered at each exit are counted."""
    from device_agent.exit_policy import parse_threshold_options
    from edge_sdk.measure.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(batch_size=batch_size, runtime=runtime, threads=threads,
                     thresholds=parse_threshold_options(exit_threshold))
    result = evaluate(artifact, data, reference=reference, config=cfg)
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    if as_json:
        print_json(result.to_dict())
        return
    typer.echo(f"model:      {result.artifact} ({result.runtime}, batch {result.batch_size})")
    typer.echo(f"data:       {result.data} ({result.samples} samples)")
    if result.accuracy is not None and result.error_rate is not None:
        typer.echo(f"accuracy:   {result.accuracy * 100:.2f}% ({result.correct}/{result.samples})")
        typer.echo(f"error rate: {result.error_rate * 100:.2f}%")
    if result.exits is not None and len(result.exits) > 0 and result.samples:
        parts = [f"stage {k}: {n} ({100 * n / result.samples:.1f}%)" for k, n in result.exits.items()]
        typer.echo(f"exits:      {', '.join(parts)}")
    if result.agreement is not None:
        typer.echo(f"agreement:  {result.agreement * 100:.2f}% with {result.reference}")
    if result.measured == "agreement" and result.accuracy is None:
        typer.echo("note:       the bundle's validation set has no labels, so this is top-1 agreement "
                   "with the recorded outputs, not accuracy; give --data for accuracy")
    if result.max_abs_diff is not None:
        typer.echo(f"outputs:    max |difference| {result.max_abs_diff:.6g} from {result.reference} "
                   f"({result.output_kind})")
