"""Which codec the device needs for bundle members: ratio and unpack time, zstd vs stdlib.

Two real int8 models: the compressed LeNet-5 as ``edge optimize`` ships it (prune 0.7,
distill, share 16, int8: weight sharing leaves 16 distinct values per kernel, which a
codec can exploit) and MobileNetV2 (224×224, int8 full-integer; ``weights=None`` since
nothing is downloaded here, so its weights are as incompressible as trained ones that
were not shared). Each row: stored bytes as a share of the raw model, and the median
time to decompress (with the agent's own :func:`device_agent.bundle.decompress`) over
interleaved trials, relative to zstd's in the same run.

    python -m benchmarks.codecs
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 9


def lenet_int8(work: Path) -> bytes:
    """The compressed LeNet's .tflite as the shipped bundle holds it (stored uncompressed)."""
    from device_agent.bundle import open_bundle
    from device_agent.protocol.manifest import ModelFormat
    from edge_sdk.demo.digits import train

    art = train(work / "digits", epochs=4)
    bundle = work / "lenet.edgepkg"
    cmd = [sys.executable, "-m", "edge_sdk", "optimize", str(art.model), "--data", str(art.train),
           "--prune", "0.7", "--distill", "--share", "16", "--int8", "--compress", "none",
           "--no-step-metrics", "--runs", "3", "-o", str(bundle)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"edge optimize failed: {done.stderr[-2000:]}{done.stdout[-2000:]}")
    return open_bundle(bundle, work / "lenet").model_path(ModelFormat.TFLITE).read_bytes()


def mobilenet_int8() -> bytes:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    calib = np.random.default_rng(0).uniform(-1, 1, (8, 224, 224, 3)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s[None]] for s in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return bytes(conv.convert())


def measure(raw: bytes) -> dict[str, tuple[int, float]]:
    """Codec → (stored bytes, median unpack seconds), trials interleaved across codecs."""
    from device_agent.bundle import decompress
    from device_agent.protocol.manifest import Compression
    from edge_sdk.bundle.writer import compress

    codecs = [Compression.ZSTD, Compression.DEFLATE, Compression.XZ]
    stored = {c: compress(raw, c) for c in codecs}
    times: dict[Compression, list[float]] = {c: [] for c in codecs}
    for _ in range(TRIALS):
        for c in codecs:
            t = time.perf_counter()
            out = decompress(stored[c], c, limit=len(raw))
            times[c].append(time.perf_counter() - t)
            assert out == raw
    return {c.value: (len(stored[c]), float(np.median(times[c]))) for c in codecs}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        models = {"compressed LeNet-5 int8": lenet_int8(Path(tmp)), "MobileNetV2 int8": mobilenet_int8()}
    print(f"{'model':<26}{'codec':<9}{'raw B':>10}{'stored B':>10}{'stored/raw':>11}"
          f"{'unpack ms':>11}{'vs zstd':>9}")
    for name, raw in models.items():
        rows = measure(raw)
        z = rows["zstd"][1]
        for codec, (size, secs) in rows.items():
            print(f"{name:<26}{codec:<9}{len(raw):>10}{size:>10}{size / len(raw):>11.3f}"
                  f"{secs * 1000:>11.2f}{secs / z:>8.1f}x")
    print(f"median of {TRIALS} interleaved unpacks; zstd level 19, deflate level 9, xz preset 9e")


if __name__ == "__main__":
    main()
