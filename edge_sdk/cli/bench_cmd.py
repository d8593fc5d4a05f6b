"""``edge bench``: latency, throughput, memory, CPU and cost of a model where it runs."""

from __future__ import annotations

from pathlib import Path

import typer

from edge_sdk.cli._common import cli_errors, print_json


def register(app: typer.Typer) -> None:
    """Add ``edge bench`` to ``app``."""
    app.command("bench")(bench)


@cli_errors
def bench(
    artifact: Path = typer.Argument(..., help="A .tflite, .onnx or .edgepkg"),
    runs: int = typer.Option(200, "--runs", help="Timed calls"),
    warmup: int = typer.Option(20, "--warmup", help="Untimed calls first"),
    threads: int = typer.Option(None, "--threads", help="Runtime threads (default: runtime's own)"),
    batch: int = typer.Option(1, "--batch", help="Samples per call"),
    runtime: str = typer.Option(None, "--runtime", help="Force a runtime (litert, onnxruntime, ...)"),
    xnnpack: bool = typer.Option(True, "--xnnpack/--no-xnnpack", help="LiteRT's XNNPACK CPU delegate"),
    data: Path = typer.Option(None, "--data", help="Real inputs instead of random: .npz (x, or one array "
                              "per input name), CSV or folder"),
    device_cost: float = typer.Option(
        None, "--device-cost", help="Device cost per hour: adds the cost of 1,000 inferences"
    ),
    shape: list[str] = typer.Option(
        [], "--shape", help="Fix an input's dynamic dimensions: NAME=1x3x48x192 (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Load time, latency p50/p95/p99, throughput, peak RSS, CPU utilization (and cost)."""
    from device_agent.feeds import parse_shape_options
    from edge_sdk.measure.bench import BenchConfig, bench_artifact

    cfg = BenchConfig(
        runs=runs, warmup=warmup, threads=threads, batch=batch, runtime=runtime,
        data=data, device_cost_per_hour=device_cost, xnnpack=xnnpack,
        shapes=parse_shape_options(shape),
    )
    r = bench_artifact(artifact, config=cfg)
    if as_json:
        print_json(r.to_dict())
        return
    lat = r.latency_ms
    typer.echo(f"model:       {r.artifact} ({r.file_bytes:,} bytes, {r.runtime})")
    typer.echo(f"inputs:      {r.input_source}, batch {r.batch}, {r.runs} runs, threads {r.threads or 'default'}")
    typer.echo(f"load:        {r.load_ms:.1f} ms")
    typer.echo(f"latency:     p50 {lat['p50']:.3f} ms  p95 {lat['p95']:.3f} ms  p99 {lat['p99']:.3f} ms")
    typer.echo(f"throughput:  {r.throughput_per_s:,.1f} samples/s")
    typer.echo(f"peak RSS:    {r.peak_rss_mb:.1f} MB")
    typer.echo(f"CPU:         {r.cpu_util * 100:.1f}% of {r.cores} cores ({r.cpu_cores_used:.2f} cores busy)")
    if r.cost_per_1k is not None:
        typer.echo(f"cost:        {r.cost_per_1k:.6g} per 1,000 inferences at {device_cost:g}/hour")
