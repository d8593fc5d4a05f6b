"""The whole path on the digits: train, optimize to an int8 bundle, serve it with the
agent, print the report.

    python examples/digits/run.py [OUT_DIR]

Trains first unless OUT_DIR already holds what ``train.py`` writes.

Uses the public APIs: ``edge_sdk.pipeline.optimize`` for the bundle and
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
from edge_sdk.pipeline import Job, Recipe, Target, optimize
from edge_sdk.report import print_table


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="digits-"))
    art = existing(out) or train(out)  # reuses what train.py wrote into OUT_DIR
    job = Job(model=art.model, data=art.train, eval_data=art.test,
              out=out / "digits.edgepkg", name="digits-lenet5")
    report = optimize(job, Recipe(int8=True, target=Target.TFLITE))
    bundle = open_bundle(report.bundle, out / "unpacked")
    engine = Engine.from_bundle_dir(bundle.root, bundle.manifest)
    stats = serve(FileSource(art.test), engine).summary()
    print_table(report)
    print(f"agent: {stats['count']} inputs, accuracy {100 * float(stats['accuracy']):.2f}%, "
          f"p50 {stats['latency_ms']['p50']:.3f} ms")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
