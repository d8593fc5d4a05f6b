"""Model swaps while serving, and probation after each swap.

:class:`LiveUpdates` is a serve-loop observer. Every ``check_every`` results it reads the
store's ``current`` pointer; when an update (over the air, ``edge-agent install`` or
``edge flash``) has switched it, the new model is loaded and put into the
:class:`~device_agent.serve.EngineRef` between two inferences. The previous model's
window becomes the probation baseline; when the new model's window regresses
(:func:`device_agent.update.probation.judge`), the store rolls back, the old engine is
put back, and ``report`` receives a ``rolled-back`` result with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from device_agent.engine import Engine, EngineOptions
from device_agent.errors import EdgeError
from device_agent.protocol.messages import DeployPhase
from device_agent.runtimes import RuntimeOptions
from device_agent.serve import EngineRef
from device_agent.sinks.base import Result
from device_agent.sources.base import Reading
from device_agent.update.agent import end_probation
from device_agent.update.flow import FlowStep, UpdateResult
from device_agent.update.probation import ProbationPolicy, ProbationWindow, Verdict, WindowCounter, judge
from device_agent.update.store import ModelStore

log = logging.getLogger(__name__)
Report = Callable[[UpdateResult], None]


class LiveUpdates:
    """Observer: follow ``current``, swap engines, judge probation, roll back on regression."""

    def __init__(self, store: ModelStore, ref: EngineRef, *, policy: ProbationPolicy,
                 report: Report = lambda r: None, check_every: int = 20,
                 runtime: str | None = None, options: RuntimeOptions | None = None,
                 engine_options: EngineOptions | None = None,
                 on_swap: Callable[[Engine], None] = lambda e: None):
        self.store, self.ref, self.policy, self.report = store, ref, policy, report
        self.on_swap = on_swap  # e.g. telemetry re-announcing the model now served
        self.check_every, self.runtime, self.options = check_every, runtime, options
        self.engine_options = engine_options  # the same cache and exit thresholds after a swap
        self.serving = store.current_id()
        self.counter = WindowCounter()
        self.baseline: ProbationWindow | None = None  # set while the new model is on probation
        self._seen = 0

    def on_result(self, result: Result) -> None:
        """Count a served result for the model on probation."""
        self.counter.on_result(result)
        self._tick()

    def on_error(self, reading: Reading, reason: str) -> None:
        """Count a failed reading for the model on probation."""
        self.counter.on_error(reading, reason)
        self._tick()

    def _tick(self) -> None:
        self._seen += 1
        if self._seen % self.check_every:
            return
        if self.baseline is not None:
            self._judge()
        if self.store.current_id() != self.serving:
            self._swap()

    def _swap(self) -> None:
        try:
            slot = self.store.current()
            if slot is None:
                return
            engine = Engine.from_bundle_dir(slot.root, slot.manifest, runtime=self.runtime, options=self.options,
                                            engine_options=self.engine_options)
        except EdgeError as e:
            log.warning("model swap to %s failed; keeping the model in use: %s", self.store.current_id(), e)
            return
        log.info("serving %s %s (probation starts)", slot.manifest.name, slot.manifest.version)
        self.baseline, self.counter = self.counter.window(), WindowCounter()
        self.ref.engine, self.serving = engine, slot.id
        self.on_swap(engine)

    def _judge(self) -> None:
        assert self.baseline is not None
        verdict = judge(self.baseline, self.counter.window(), self.policy)
        if verdict.verdict == Verdict.PASS:
            log.info("probation passed: %s", verdict.reason)
            self.baseline = None
            slot = self.store.current()
            m = slot.manifest if slot else None
            self.report(UpdateResult(DeployPhase.PROBATION_PASSED, f"probation: {verdict.reason}", FlowStep.REPORT,
                                     m.name if m else None, m.version if m else None, slot.id if slot else None))
        elif verdict.verdict == Verdict.REGRESSED:
            result = end_probation(self.store, self.baseline, self.counter.window(), self.policy)
            self.baseline = None
            if result is not None:
                self._swap_back()
                self.report(result)

    def _swap_back(self) -> None:
        slot = self.store.current()
        if slot is not None:
            self.ref.engine = Engine.from_bundle_dir(slot.root, slot.manifest, runtime=self.runtime,
                                                     options=self.options, engine_options=self.engine_options)
            self.serving, self.counter = slot.id, WindowCounter()
            self.on_swap(self.ref.engine)
