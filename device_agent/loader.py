"""Open what the user names: a bundle (``.edgepkg``), or a bare ``.tflite``/``.onnx`` file."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from device_agent.bundle import Bundle, SignatureCheck, open_bundle
from device_agent.engine import Engine, EngineOptions
from device_agent.manifest import ModelFormat
from device_agent.runtimes import RuntimeOptions, load_model


@contextlib.contextmanager
def opened_bundle(path: Path, *, check_signature: SignatureCheck | None = None) -> Iterator[Bundle]:
    """Verify and unpack a bundle into a temporary folder, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="edgepkg-"))
    try:
        yield open_bundle(path, tmp / "b", check_signature=check_signature, durable=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def engine_for(
    path: Path, *, runtime: str | None = None, options: RuntimeOptions | None = None,
    prefer: ModelFormat | None = None, engine_options: EngineOptions | None = None,
) -> Iterator[Engine]:
    """An :class:`Engine` for a bundle or a bare model file, valid inside the ``with``."""
    if path.suffix.lower() == ".edgepkg":
        with opened_bundle(path) as b:
            yield Engine.from_bundle_dir(
                b.root, b.manifest, runtime=runtime, options=options, prefer=prefer,
                engine_options=engine_options,
            )
        return
    yield Engine(load_model(path, runtime=runtime, options=options), options=engine_options)
