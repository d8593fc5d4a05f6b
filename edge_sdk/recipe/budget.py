"""The accuracy budget covers every step a user asks for (pure).

``--max-drop`` (default 1.0 point) bounds the drop of the whole recipe against the
input model on the selection split: each graph step, int8 and the searched recipe.
A step that takes the total over the budget is refused with what it cost, or, with
``--force``, shipped and recorded as an :class:`Overrun` (the report's last line and
the manifest's ``optimization.recipe.budget``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from device_agent.errors import EdgeError

# The flag that asked for each step, to name it in an error.
FLAGS = {"prune": "--prune", "share": "--share", "lowrank": "--lowrank", "distill": "--distill",
         "prune+distill": "--prune --distill", "lowrank+distill": "--lowrank --distill", "pick": "--pick"}
# Float noise between two measurements of the same accuracy (points).
_EPS = 1e-6


@dataclass(frozen=True)
class Overrun:
    """A step shipped over the budget with ``--force``."""

    step: str
    cost_points: float  # this step's own drop (against the step before it)
    total_drop_points: float  # against the input model
    budget: float

    def sentence(self) -> str:
        """The overrun as one sentence, for the line ``edge optimize`` prints last."""
        return (f"{self.step} cost {self.cost_points:.2f} points; total drop "
                f"{self.total_drop_points:.2f} points, over the budget of {self.budget}")


def check_step(step: str, *, before: float, after: float, baseline: float, budget: float,
               force: bool, split: str = "the selection split") -> Overrun | None:
    """``None`` when the total drop after ``step`` is within ``budget``; an :class:`Overrun`
    when it is not and ``force`` is set; else an :class:`EdgeError` naming the cost.

    Accuracies are in percent; ``before``/``after`` around the step, ``baseline`` the input model.
    """
    total = round(baseline - after, 4)
    if total <= budget + _EPS:
        return None
    over = Overrun(step, round(before - after, 4), total, budget)
    if force:
        return over
    flag = FLAGS.get(step, step)
    raise EdgeError(
        f"{flag}: {step} costs {over.cost_points:.2f} points ({before:.2f}% -> {after:.2f}% on "
        f"{split}); the recipe's total drop {total:.2f} points exceeds --max-drop {budget}. "
        "Nothing was written: raise --max-drop, choose a milder step, or pass --force to ship it "
        "with the overrun recorded"
    )


def summary(budget: float, force: bool, overruns: list[Overrun]) -> dict[str, Any]:
    """The manifest's and report's record of the budget."""
    return {"max_drop_points": budget, "covers": "every step", "force": force,
            "overruns": [asdict(o) for o in overruns]}


def last_line(budget_record: dict[str, Any]) -> str | None:
    """The line ``edge optimize`` prints last when it shipped over the budget."""
    overs = budget_record.get("overruns") or []
    if not overs:
        return None
    parts = "; ".join(Overrun(**o).sentence() for o in overs)
    return f"OVER BUDGET (--force): {parts}"
