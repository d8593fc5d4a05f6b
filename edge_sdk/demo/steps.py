"""``edge demo``: the whole path on shipped data, as a list of steps.

Each step takes the shared :class:`~edge_sdk.demo.state.DemoState` and fills in its part; later issues add
steps (deploy to a fleet, watch telemetry) by appending to :data:`STEPS`. A step that
starts something (a broker, a process) registers its stop on ``state.cleanup``, which
:func:`run_demo` closes after the last step or the first failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edge_sdk.demo import fleet, ota
from edge_sdk.demo.state import DemoState


def train_step(s: DemoState) -> None:
    """Train LeNet-5 on the digits (``results['train']``)."""
    from edge_sdk.demo.digits import train

    s.progress("training LeNet-5 on digits", 0, 1)
    art = train(s.out / "digits")
    s.results["train"] = art
    s.say(f"trained {art.model.name}: test accuracy {art.test_accuracy}%")


def optimize_step(s: DemoState) -> None:
    """Optimize the trained model to an int8 bundle (``results['report']``)."""
    from edge_sdk.recipe.pipeline import Job, Recipe, optimize

    art = s.results["train"]
    job = Job(model=art.model, data=art.train, eval_data=art.test, out=s.out / "digits.edgepkg",
              name="digits-lenet5", version="0.1.0")
    s.results["report"] = optimize(job, Recipe(int8=True), progress=s.progress)


def serve_step(s: DemoState) -> None:
    """Serve the test split with the agent (``results['serve']``: its summary)."""
    from device_agent.loader import engine_for
    from device_agent.serve import serve
    from device_agent.sources.file import FileSource

    s.progress("serving the test split with the agent", 0, 1)
    report = s.results["report"]
    with engine_for(report.bundle) as engine:
        stats = serve(FileSource(s.results["train"].test), engine)
    summary: dict[str, Any] = stats.summary()
    s.results["serve"] = summary
    lat = summary["latency_ms"]
    s.say(f"agent served {summary['count']} inputs: accuracy "
          f"{100 * float(summary.get('accuracy', 0.0)):.2f}%, latency p50 {lat['p50']:.3f} ms, "
          f"p99 {lat['p99']:.3f} ms, errors {summary['errors']}")


STEPS: list[tuple[str, Callable[[DemoState], None]]] = [
    ("train", train_step),
    ("optimize", optimize_step),
    ("serve", serve_step),
    *fleet.STEPS,
    *ota.STEPS,
]


def run_demo(
    state: DemoState, steps: Sequence[tuple[str, Callable[[DemoState], None]]] | None = None
) -> DemoState:
    """Run every step in order; each step's result lands in ``state.results``.

    Whatever the steps started is stopped before this returns or raises.
    """
    with state.cleanup:
        for _name, step in STEPS if steps is None else steps:
            step(state)
    return state
