"""The embeddable agent, the package's front door: one model opened from a bundle (or the
store), answered in-process with :meth:`Agent.infer` or served from a source to sinks with
:meth:`Agent.serve`.

``edge-agent run`` and ``daemon`` open and serve their model through this class (see
:mod:`device_agent.assembly`, which adds the broker, telemetry and updates around it), so
a Python caller and the CLI take one path::

    from device_agent import Agent

    with Agent.from_bundle("digits.edgepkg") as agent:
        print(agent.infer(x).label)
        stats = agent.serve("file:test.npz", ["stdout"])
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from device_agent.config import AgentConfig, ServeConfig
from device_agent.errors import EdgeError, InputError
from device_agent.trust import TrustStore

if TYPE_CHECKING:
    from device_agent.engine import Engine, EngineOptions, Prediction
    from device_agent.runtimes import RuntimeOptions
    from device_agent.serve import EngineRef, Observer
    from device_agent.sinks.base import Sink
    from device_agent.sources.base import Source
    from device_agent.stats import RunStats
    from device_agent.update.store import ModelStore

log = logging.getLogger(__name__)
Inputs = np.ndarray | Mapping[str, np.ndarray]


def trust_store(config: AgentConfig, store: ModelStore | None) -> TrustStore:
    """The configured keys plus ``STORE/keys``; says once when there are none."""
    paths = list(config.keys)
    if store is not None and store.keys_dir.is_dir():
        paths.append(store.keys_dir)
    trust = TrustStore.from_paths(paths)
    if not trust.keys:
        log.warning("no trusted public keys (--key, [agent] keys or STORE/keys): bundle signatures are not "
                    "checked (any bundle is served as if unsigned); updates over the air are refused until a "
                    "key is configured")
    return trust


class Agent:
    """One opened model with its engine (preprocessing, cache, early exit) and serving loop.

    Close it (or use it in a ``with`` block): a bundle is unpacked into a temporary folder
    that lives as long as the agent.
    """

    def __init__(self, engine: Engine, config: AgentConfig, resources: contextlib.ExitStack) -> None:
        self.engine = engine
        self.config = config
        self._resources = resources
        self._target: Engine | EngineRef = engine

    @classmethod
    def open(cls, config: AgentConfig, *, bundle: Path | None = None, store: ModelStore | None = None,
             trust: TrustStore | None = None) -> Agent:
        """The agent for ``bundle`` (a .edgepkg, .tflite or .onnx), or the store's current model."""
        if (bundle is None) == (store is None):
            raise EdgeError("give either a bundle or a model store (exactly one)")
        resources = contextlib.ExitStack()
        try:
            engine = resources.enter_context(_engine(config, store, bundle, trust or trust_store(config, store)))
        except BaseException:
            resources.close()
            raise
        return cls(engine, config, resources)

    @classmethod
    def from_bundle(
        cls, path: str | os.PathLike[str], *, keys: Sequence[str | os.PathLike[str]] = (),
        runtime: str | None = None, threads: int | None = None, providers: Sequence[str] = (),
        delegate: str | None = None, cache: str = "off", cache_mb: float = 32.0,
        exit_thresholds: Sequence[str] = (), batch: int = 1, batch_ms: float = 5.0, backlog_batch: int = 32,
    ) -> Agent:
        """Open a bundle; the options are :class:`~device_agent.config.ServeConfig`'s (and
        ``keys``: trusted public keys, which make a signature required)."""
        serve = ServeConfig(runtime=runtime, threads=threads, providers=tuple(providers), delegate=delegate,
                            cache=cache, cache_mb=cache_mb, exit_thresholds=tuple(exit_thresholds), batch=batch,
                            batch_ms=batch_ms, backlog_batch=backlog_batch)
        return cls.open(AgentConfig(keys=tuple(Path(k) for k in keys), serve=serve), bundle=Path(path))

    @property
    def manifest(self) -> Any:
        """The bundle's :class:`~device_agent.protocol.manifest.Manifest` (``None`` for a bare model file)."""
        return self.engine.manifest

    def infer(self, inputs: Inputs, *, stream: str = "") -> Prediction:
        """One reading → its :class:`~device_agent.engine.Prediction`: a dict of named inputs,
        or an array for a one-input model. Bad input raises :class:`~device_agent.errors.InputError`."""
        if not isinstance(inputs, Mapping):
            return self.engine.infer_one(np.asarray(inputs), stream=stream)
        if self.engine.general:  # the named-tensor path takes the dict as it is
            return self.engine.infer_one(inputs, stream=stream)
        # A one-input classifier's fast path takes the array: the dict must name that input.
        (spec,) = self.engine.feeder.fed
        if set(inputs) != {spec.name}:
            raise InputError(f"inputs: expected the model's one input {spec.name!r}, found {sorted(inputs)}")
        return self.engine.infer_one(np.asarray(inputs[spec.name]), stream=stream)

    def serve(self, source: str | Source, sinks: Sequence[str | Sink] = (), *, limit: int | None = None,
              observers: Sequence[Observer] = (), stats: RunStats | None = None) -> RunStats:
        """Serve every reading of ``source`` (a source URI such as ``"file:test.npz"``, or a
        :class:`~device_agent.sources.base.Source`) to ``sinks`` (``"stdout"`` or sink objects)
        until it ends or ``limit`` readings are taken; the run's statistics."""
        from device_agent.batching import BatchOptions
        from device_agent.serve import serve
        from device_agent.sinks import open_sink
        from device_agent.sources import open_source
        from device_agent.sources.base import described
        from device_agent.stats import RunStats

        s = self.config.serve
        src = open_source(source) if isinstance(source, str) else source
        opened: list[Sink] = []
        try:
            # A model the source cannot feed is refused here, once, not skipped reading by reading.
            name = source if isinstance(source, str) else (s.source or type(source).__name__)
            self.engine.check_source(described(src), what=f"source {name}")
            targets: list[Sink] = []
            for k in sinks:
                if isinstance(k, str):
                    k = open_sink(k)
                    opened.append(k)
                targets.append(k)
            batching = BatchOptions(max_batch=s.batch, max_wait_ms=s.batch_ms, backlog=s.backlog_batch)
            return serve(src, self._target, sinks=targets, observers=observers,
                         limit=limit if limit is not None else s.limit, batch=batching, stats=stats or RunStats())
        finally:  # what this call opened, it closes
            for k in opened:
                k.close()
            if isinstance(source, str):
                src.close()

    def swappable(self) -> EngineRef:
        """Serve through a reference an update can swap between two inferences (the daemon)."""
        from device_agent.serve import EngineRef

        ref = EngineRef(self.engine)
        self._target = ref
        return ref

    def close(self) -> None:
        """Release the model and remove the unpacked bundle."""
        self._resources.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@contextlib.contextmanager
def _engine(config: AgentConfig, store: ModelStore | None, bundle: Path | None,
            trust: TrustStore) -> Iterator[Engine]:
    s = config.serve
    runtime_options = runtime_options_of(s)
    engine_options = engine_options_of(s)
    if store is not None:
        from device_agent.update.agent import engine_for_store

        with engine_for_store(store.root, runtime=s.runtime, options=runtime_options,
                              engine_options=engine_options, trust=store.trust) as e:
            yield e
        return
    from device_agent.loader import engine_for

    assert bundle is not None
    check_signature = trust if trust.keys else None
    with engine_for(bundle, runtime=s.runtime, options=runtime_options, engine_options=engine_options,
                    check_signature=check_signature) as e:
        yield e


def runtime_options_of(s: ServeConfig) -> RuntimeOptions:
    """The runtime's options (threads, providers, delegate) from the serve configuration."""
    from device_agent.runtimes import RuntimeOptions

    return RuntimeOptions(threads=s.threads, providers=s.providers or ("cpu",), delegate=s.delegate)


def engine_options_of(s: ServeConfig) -> EngineOptions:
    """The engine's options (cache, exit thresholds) from the serve configuration."""
    from device_agent.cache import CacheConfig
    from device_agent.engine import EngineOptions
    from device_agent.exit_policy import parse_threshold_options

    return EngineOptions(cache=CacheConfig.parse(s.cache, max_bytes=int(s.cache_mb * 1024 * 1024)),
                         thresholds=parse_threshold_options(list(s.exit_thresholds)))
