"""The remedy search: order of remedies and which attempt is chosen (pure)."""

from __future__ import annotations

from edge_sdk.passes.quantize.base import Calibration, Decision, QuantizeConfig, candidates, search

ALL = (Calibration.MINMAX, Calibration.PERCENTILE, Calibration.ENTROPY)


def _accuracy_of(cfg: QuantizeConfig) -> float:
    # A stand-in "model": per-channel and entropy help; each float layer helps more.
    acc = 90.0 + (2.0 if cfg.per_channel else 0.0)
    acc += 1.0 if cfg.calibration == Calibration.ENTROPY else 0.0
    return acc + 2.0 * len(cfg.keep_float)


def _run(base: QuantizeConfig, max_drop: float,
         supported: tuple[Calibration, ...] = ALL) -> Decision:
    converted: list[QuantizeConfig] = []

    def convert(cfg: QuantizeConfig) -> bytes:
        converted.append(cfg)
        return str(len(converted) - 1).encode()

    return search(
        base, supported=supported,
        convert=convert,
        evaluate=lambda data: _accuracy_of(converted[int(data)]),
        sensitive=lambda: ["l3", "l1", "l2", "l0"],
        reference=97.0, max_drop=max_drop, progress=lambda *a: None,
    )


def test_order_of_remedies() -> None:
    base = QuantizeConfig(per_channel=False)
    names = [r for r, _, _ in candidates(base, ALL, lambda: ["a", "b"])]
    assert names == ["none", "per-channel", "calibration=percentile", "calibration=entropy",
                     "float-layers=1", "float-layers=2"]


def test_first_attempt_within_budget_is_chosen() -> None:
    d = _run(QuantizeConfig(per_channel=False), max_drop=4.0)
    # none: 90 (drop 7) → per-channel: 92 (drop 5) → percentile: 92 → entropy: 93 (drop 4)
    assert d.chosen.remedy == "calibration=entropy"
    assert [a.remedy for a in d.attempts][-1] == "calibration=entropy"
    assert d.within_budget


def test_float_layers_follow_sensitivity_ranking() -> None:
    d = _run(QuantizeConfig(), max_drop=1.0)
    assert d.chosen.remedy == "float-layers=2"
    assert d.chosen.config.keep_float == ("l3", "l1")


def test_best_attempt_when_nothing_fits() -> None:
    d = _run(QuantizeConfig(), max_drop=-100.0, supported=(Calibration.MINMAX,))
    assert not d.within_budget
    assert d.chosen.remedy == "float-layers=3"  # the smallest drop of all tried
    assert len(d.attempts) == 1 + 3


def test_time_budget_stops_the_search_with_the_best_so_far() -> None:
    now = [0.0]
    converted: list[QuantizeConfig] = []

    def convert(cfg: QuantizeConfig) -> bytes:
        converted.append(cfg)
        now[0] += 50.0  # each conversion "takes" 50 s
        return str(len(converted) - 1).encode()

    d = search(QuantizeConfig(per_channel=False), supported=ALL, convert=convert,
               evaluate=lambda data: _accuracy_of(converted[int(data)]), sensitive=lambda: ["l0"],
               reference=97.0, max_drop=0.0, progress=lambda *a: None, time_budget_s=120.0,
               clock=lambda: now[0])
    assert [a.remedy for a in d.attempts] == ["none", "per-channel", "calibration=percentile"]
    assert d.stopped == "time budget of 120 s spent" and not d.within_budget
    assert d.chosen.remedy == "per-channel"  # the first of the best
