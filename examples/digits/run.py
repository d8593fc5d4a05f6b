"""The whole path on the digits: train, optimize to an int8 bundle, serve it with the
agent, print the report.

    python examples/digits/run.py [OUT_DIR] [--early-exit]

Trains first unless OUT_DIR already holds what ``train.py`` writes. ``--early-exit``
adds an exit head after ``pool1``: the bundle (``digits-exit.edgepkg``) is then an int8
cascade whose thresholds keep it within 0.5 points of the full model, and the agent
stops each input at the first confident exit.

Uses the public APIs: ``edge_sdk.recipe.pipeline.optimize`` for the bundle and
``device_agent`` (bundle verification, engine, serve loop) for serving.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from device_agent.bundle import open_bundle
from device_agent.engine import Engine
from device_agent.serve import serve
from device_agent.sources.file import FileSource
from edge_sdk.demo.digits import existing, train
from edge_sdk.passes.early_exit.keras import EarlyExitConfig
from edge_sdk.recipe.pipeline import Job, Recipe, Target, optimize
from edge_sdk.report.render import print_table


def main(argv: list[str]) -> int:
    flags = {a for a in argv[1:] if a.startswith("--")}
    args = [a for a in argv[1:] if not a.startswith("--")]
    out = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="digits-"))
    art = existing(out) or train(out)  # reuses what train.py wrote into OUT_DIR
    exits = "--early-exit" in flags
    # Thresholds are calibrated on the validation half of train.npz (no eval_data), so
    # the test split the agent serves below stays unseen.
    job = Job(model=art.model, data=art.train, eval_data=None if exits else art.test,
              out=out / ("digits-exit.edgepkg" if exits else "digits.edgepkg"),
              name="digits-lenet5-exit" if exits else "digits-lenet5")
    early = EarlyExitConfig(at_layers=("pool1",)) if exits else None
    report = optimize(job, Recipe(int8=True, target=Target.TFLITE, early_exit=early,
                                  max_drop=0.5 if exits else 1.0))
    bundle = open_bundle(report.bundle, out / ("unpacked-exit" if exits else "unpacked"))
    engine = Engine.from_bundle_dir(bundle.root, bundle.manifest)
    stats = serve(FileSource(art.test), engine).summary()
    print_table(report)
    print(f"agent: {stats['count']} inputs, accuracy {100 * float(stats['accuracy']):.2f}%, "
          f"p50 {stats['latency_ms']['p50']:.3f} ms, exits {stats['exits']}")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
