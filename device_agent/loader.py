"""Open what the user names: a bundle (``.edgepkg``), or a bare ``.tflite``/``.onnx`` file."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from device_agent.bundle import Bundle, SignatureCheck, open_bundle
from device_agent.engine import Engine, EngineOptions
from device_agent.errors import EdgeError
from device_agent.protocol.manifest import ModelFormat
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
    check_signature: SignatureCheck | None = None,
) -> Iterator[Engine]:
    """An :class:`Engine` for a bundle or a bare model file, valid inside the ``with``.

    ``check_signature`` (trusted keys) refuses a bundle it does not accept, and a bare
    model file, which carries no signature at all."""
    if path.suffix.lower() == ".edgepkg":
        with opened_bundle(path, check_signature=check_signature) as b:
            yield Engine.from_bundle_dir(
                b.root, b.manifest, runtime=runtime, options=options, prefer=prefer,
                engine_options=engine_options,
            )
        return
    if check_signature is not None:
        raise EdgeError(f"{path}: a bare model file carries no signature, and trusted keys are "
                        "configured; serve a signed .edgepkg bundle")
    yield Engine(load_model(path, runtime=runtime, options=options), options=engine_options)
