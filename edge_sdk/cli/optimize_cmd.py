"""``edge optimize``: a Keras or ONNX model → an (int8, early-exit) ``.edgepkg`` plus its report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from device_agent.cli_support import check_output_file
from device_agent.mqtt import BrokerOptions  # evaluated at run time: @broker_options reads the hints
from edge_sdk.cli._common import BGR, GRAYSCALE, LAYOUT, MEAN, RESIZE, SCALE, STD, cli_errors, print_json
from edge_sdk.cli._options import broker_options

if TYPE_CHECKING:
    from device_agent.protocol.manifest import OutputKind
    from edge_sdk.measure.device_bench import DeviceTarget
    from edge_sdk.passes.early_exit.keras import EarlyExitConfig
    from edge_sdk.recipe.compression import CompressionFlags
    from edge_sdk.recipe.pipeline import Recipe


def register(app: typer.Typer) -> None:
    """Add ``edge optimize`` to ``app``."""
    app.command("optimize")(optimize)


@cli_errors
@broker_options()
def optimize(
    model: Path = typer.Argument(..., help="A .keras/.h5/SavedModel folder or an .onnx file"),
    data: Path = typer.Option(..., "--data", help="Labelled data (.npz x/y, image folder, CSV): "
                              "split into calibration and validation"),
    out: Path = typer.Option(..., "-o", "--out", help="The bundle to write (NAME.edgepkg)"),
    int8: bool | None = typer.Option(
        None, "--int8/--no-int8", help="Full-integer int8 post-training quantization (default: on "
        "with the --max-drop search, where every candidate is judged as int8, else off)"),
    target: str | None = typer.Option(
        None, "--target", help="tflite, onnx or both (default: the input's own format: onnx for an "
        ".onnx model, else tflite)"),
    max_drop: float | None = typer.Option(
        None, "--max-drop", help="Accuracy budget in points (default 1.0) covering every step. Alone "
        "(no --prune/--share/--lowrank): searches prune, dense-unit and sparsity rows, each recovered "
        "by distillation, with weight sharing, for the smallest shipped form (int8, compressed) whose "
        "measured drop stays within it. With chosen steps: a step "
        "that takes the total over it is refused (or shipped with --force)"),
    force: bool = typer.Option(
        False, "--force", help="Ship steps over --max-drop instead of refusing them; the overrun is "
        "printed last and recorded in the manifest"),
    objective: str = typer.Option(
        "size", "--objective", help="What the --max-drop search minimizes within the budget: size "
        "(the model's stored bytes), latency (p50, batch 1) or macs"),
    max_bytes: int | None = typer.Option(
        None, "--max-bytes", help="Search: ship no candidate whose model is stored in more bytes"),
    max_latency: float | None = typer.Option(
        None, "--max-latency", help="Search: ship no candidate slower than this p50 (ms, batch 1; here, "
        "or on the --latency-on device)"),
    latency_on: str | None = typer.Option(
        None, "--latency-on", metavar="DEVICE", help="Search: time every candidate on this device of "
        "--fleet (its agent, reached through --broker as edge deploy reaches it; requests signed "
        "with --key) and use its p50 for --max-latency and --objective latency"),
    fleet: str = typer.Option("default", "--fleet", help="The --latency-on device's fleet"),
    key: Path | None = typer.Option(
        None, "--key", help="Ed25519 private key that signs the --latency-on requests (the one that "
        "signs bundles; default: --sign's key)"),
    latency_timeout: float = typer.Option(
        120.0, "--latency-timeout", help="Seconds to wait for the --latency-on device's answer per candidate"),
    broker: BrokerOptions | None = None,
    pick: int | None = typer.Option(
        None, "--pick", help="Ship candidate N of the last search's Pareto front (NAME.candidates/ "
        "beside -o) without searching again: judged against the budget (the search's, or --max-drop) "
        "and on the held-out split like the search's choice; the report files are rewritten for it"),
    search: bool | None = typer.Option(
        None, "--search/--no-search", help="Force or forbid the --max-drop search (default: search "
        "when --max-drop is given without --prune/--share/--lowrank)"),
    step_metrics: bool = typer.Option(
        True, "--step-metrics/--no-step-metrics", help="Export, size and time the model after every "
        "compression step for the report (off: those cells read '-')"),
    calibration: str = typer.Option("minmax", "--calibration",
                                    help="minmax, percentile or entropy (ONNX only)"),
    samples: int = typer.Option(200, "--samples", help="Calibration samples"),
    eval_data: Path | None = typer.Option(
        None, "--eval-data", help="Held-out data the model never saw, for the final accuracy "
        "(default: a stratified quarter of --data, optimistic if --data trained the model)"),
    name: str | None = typer.Option(None, "--name", help="Model name (default: bundle file name)"),
    version: str = typer.Option("0.1.0", "--bundle-version", metavar="SEMVER",
                                help="Semantic version of the bundle"),
    old_version: str | None = typer.Option(None, "--version", hidden=True,
                                           help="Old spelling of --bundle-version"),
    runs: int = typer.Option(50, "--runs", help="Timed runs per model for the report"),
    prune: float | None = typer.Option(
        None, "--prune", help="Remove this fraction of channels, in [0, 1) (Keras: rebuilt smaller; "
        "ONNX: refit by least squares)"),
    share: int | None = typer.Option(
        None, "--share", help="Weight sharing: K values per kernel, 2..256 (ONNX: palettized)"),
    lowrank: float | None = typer.Option(
        None, "--lowrank", help="Factorize Dense/1x1 Conv keeping this fraction of SVD energy (Keras)"),
    compress: str | None = typer.Option(
        None, "--compress", help="Store model files in the bundle compressed: none, xz, deflate or zstd "
        "(default: xz with the --max-drop search, else none; zstd needs the device's zstd extra)"),
    distill: bool = typer.Option(
        False, "--distill", help="Recover accuracy by distillation from the original model (Keras)"),
    output_kind: str = typer.Option(
        "classifier", "--output-kind", help="What the outputs mean, for the agent: classifier, raw or "
        "regression (detection: wrap the converted model with edge pack)"),
    resize: str | None = RESIZE,
    scale: str | None = SCALE,
    mean: str | None = MEAN,
    std: str | None = STD,
    grayscale: bool = GRAYSCALE,
    bgr: bool = BGR,
    layout: str | None = LAYOUT,
    validation_samples: int | None = typer.Option(
        None, "--validation-samples", min=1, help="Held-out samples the bundle carries for the device's "
        "health check (default: as many as fit in 10 percent of the model files' bytes, at least 1)"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    sign: Path | None = typer.Option(None, "--sign", help="Sign the bundle with this Ed25519 private key"),
    early_exit: bool = typer.Option(False, "--early-exit",
                                    help="Add exit heads: the bundle becomes a cascade of stages"),
    exit_at: str | None = typer.Option(None, "--exit-at", help="Layers to exit after, LAYER,..."),
    exit_fractions: str | None = typer.Option(
        None, "--exit-fractions", help="Exit where these fractions of MACs are spent (0.2,0.5)"),
    exit_criterion: str = typer.Option("max_prob", "--exit-criterion", help="max_prob or entropy"),
    exit_epochs: int = typer.Option(40, "--exit-epochs", help="Epochs to train each exit head"),
    exit_int8_first: bool = typer.Option(
        False, "--exit-int8-first", help="With --int8: quantize stage 0's first layer too "
        "(by default it stays float32: faster on XNNPACK for few input channels)"),
) -> None:
    """Optimize MODEL into a bundle; print the before/after table and write NAME.report.*."""
    from edge_sdk import api
    from edge_sdk._quiet import quiet
    from edge_sdk.cli._progress import rich_progress
    from edge_sdk.recipe.compression import CompressionFlags
    from edge_sdk.report.render import print_table, report_paths

    if old_version is not None:
        typer.echo("warning: optimize --version is now --bundle-version (the bundle's semantic "
                   "version; edge --version prints the tool's); the old spelling still works",
                   err=True)
        version = old_version
    # Every file the run will write, checked now rather than after minutes of work.
    check_output_file(out, "bundle")
    for path in report_paths(out).values():
        check_output_file(path, "report")
    if sign is not None:
        from edge_sdk.bundle.signing import load_signer

        load_signer(sign)  # a bad key fails now, not after the optimization
    device = _latency_target(latency_on, fleet, broker, key or sign, latency_timeout)

    from edge_sdk.model.preprocess import steps_from_flags
    from edge_sdk.recipe.shipped_search import from_flags

    flags = CompressionFlags(prune=prune, share=share, lowrank=lowrank, distill=distill)
    chosen = any(v is not None for v in (prune, share, lowrank)) or early_exit
    if pick is not None:
        recipe = _pick_recipe(out, pick, max_drop, calibration, samples, runs, chosen or bool(distill) or
                              search is True or device is not None or int8 is not None or target is not None
                              or compress is not None)
    else:
        # ONNX is the post-training path: --max-drop bounds its steps (int8, --prune/--share),
        # it does not start the Keras search (unless --search insists, and is refused).
        onnx_input = model.suffix.lower() == ".onnx"
        searching = None if onnx_input and search is not True else from_flags(
            search, max_drop, chosen, objective=objective, max_bytes=max_bytes, max_latency_ms=max_latency,
            latency_on=device)
        int8 = searching is not None if int8 is None else int8
        if target is None:
            target = "onnx" if onnx_input else "tflite"
        recipe = replace(_recipe(target, int8, 1.0 if max_drop is None else max_drop, calibration, samples,
                                 runs, flags, compress or ("xz" if searching else "none")), search=searching)
    recipe = replace(recipe, measure_steps=step_metrics, force=force, early_exit=_early_exit(
        early_exit, exit_at, exit_fractions, exit_criterion, exit_epochs, exit_int8_first),
        output_kind=_output_kind(output_kind, early_exit), validation_samples=validation_samples,
        preprocessing=steps_from_flags(resize=resize, scale=scale, mean=mean, std=std, grayscale=grayscale,
                                       bgr=bgr, layout=layout))
    with rich_progress(enabled=not as_json) as progress, quiet():
        report = api.optimize(model, data, out=out, recipe=recipe, name=name, version=version,
                              eval_data=eval_data, sign=sign, progress=progress)
    if as_json:
        print_json(report.to_dict())
        return
    print_table(report)
    _print_overrun(report.recipe.get("budget", {}))


def _latency_target(device: str | None, fleet: str, broker: BrokerOptions | None, key: Path | None,
                    timeout: float) -> DeviceTarget | None:
    """The --latency-on device with its broker and signing key, checked before any work."""
    from device_agent.errors import EdgeError

    if device is None:
        if broker is not None:
            raise EdgeError("--broker: only --latency-on DEVICE uses a broker in edge optimize; give it or "
                            "leave --broker out")
        return None
    if broker is None:
        raise EdgeError("--latency-on: expected --broker mqtt://HOST[:PORT] (as edge deploy takes it), "
                        "found nothing")
    if key is None:
        raise EdgeError("--latency-on: expected --key (the Ed25519 private key that signs bundles: the device "
                        "times only requests signed by a key it trusts), found nothing")
    from edge_sdk.bundle.signing import load_signer
    from edge_sdk.measure.device_bench import DeviceTarget

    load_signer(key)
    return DeviceTarget(fleet=fleet, device=device, broker=broker, key=key, timeout_s=timeout)


def _pick_recipe(out: Path, n: int, max_drop: float | None, calibration: str, samples: int, runs: int,
                 steps_given: bool) -> Recipe:
    """``--pick N``: the search's target, int8 setting, compression and budget (``--max-drop``
    overrides the budget), no passes of its own."""
    from device_agent.errors import EdgeError
    from edge_sdk.recipe.compression import CompressionFlags
    from edge_sdk.recipe.pick import read_index

    if steps_given:
        raise EdgeError(f"--pick {n} ships a kept candidate as it is; leave out --prune/--share/--lowrank/"
                        "--distill/--early-exit/--search/--latency-on/--int8/--target/--compress")
    _, index = read_index(out)  # the pipeline checks the candidate before loading the model
    budget = float(index.get("budget_points", 1.0)) if max_drop is None else max_drop
    recipe = _recipe(str(index["format"]), bool(index.get("int8", True)), budget, calibration, samples, runs,
                     CompressionFlags(), str(index["compression"]))
    return replace(recipe, passes=(), pick=n)


def _print_overrun(record: dict[str, object]) -> None:
    """With --force, the overrun is the last line a person reads."""
    from edge_sdk.recipe.budget import last_line

    line = last_line(record)
    if line is not None:
        typer.echo(line)


def _recipe(target: str, int8: bool, max_drop: float, calibration: str, samples: int,
            runs: int, flags: CompressionFlags, compress: str = "none") -> Recipe:
    from edge_sdk.api import make_recipe

    return make_recipe(target=target, int8=int8, max_drop=max_drop, calibration=calibration, samples=samples,
                  runs=runs, prune=flags.prune, share=flags.share, lowrank=flags.lowrank,
                  distill=flags.distill, compress=compress)


def _early_exit(enabled: bool, at: str | None, fractions: str | None, criterion: str,
                epochs: int, int8_first: bool = False) -> EarlyExitConfig | None:
    from device_agent.errors import EdgeError
    from device_agent.exit_policy import Criterion
    from edge_sdk.passes.early_exit.keras import EarlyExitConfig

    if not enabled:
        if at is not None or fractions is not None or int8_first:
            raise EdgeError("--exit-at/--exit-fractions/--exit-int8-first need --early-exit")
        return None
    if at is not None and fractions is not None:
        raise EdgeError("--exit-at and --exit-fractions: give one of them, not both")
    try:
        crit = Criterion(criterion)
    except ValueError:
        raise EdgeError(f"--exit-criterion {criterion!r}: expected max_prob or entropy") from None
    layers = tuple(n.strip() for n in (at or "").split(",") if n.strip())
    if at is not None and not layers:
        raise EdgeError(f"--exit-at {at!r}: expected layer names like conv1,pool2")
    try:
        fracs = tuple(float(f) for f in fractions.split(",")) if fractions else (0.2,)
    except ValueError:
        raise EdgeError(f"--exit-fractions {fractions!r}: expected numbers like 0.2,0.5") from None
    return EarlyExitConfig(at_layers=layers, mac_fractions=fracs, criterion=crit, epochs=epochs,
                           float_first=not int8_first)


def _output_kind(value: str, early_exit: bool) -> OutputKind:
    from device_agent.errors import EdgeError
    from device_agent.protocol.manifest import OutputKind

    try:
        kind = OutputKind(value)
    except ValueError:
        raise EdgeError(f"--output-kind {value!r}: expected classifier, raw or regression") from None
    if kind == OutputKind.DETECTION:
        raise EdgeError("--output-kind detection: name the box and score outputs with edge pack "
                        "(--boxes/--scores) on the converted model")
    if early_exit and kind != OutputKind.CLASSIFIER:
        raise EdgeError(f"--early-exit needs --output-kind classifier (got {kind.value})")
    return kind


def _default_name(out: Path) -> str:
    from edge_sdk.api import default_name

    return default_name(out)
