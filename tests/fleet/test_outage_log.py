"""A broker that is away is reported once per outage, with the retry interval, by the
collector as by the agent (the agent's side: tests/ota/test_agent_network.py)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fleet.conftest import wait_for
from tests.support.mosquitto import Mosquitto


def test_collector_reports_a_broker_outage_once(procs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mq = Mosquitto(tmp_path / "mosq")  # its port, not started yet
    procs.collector(mq.url, str(tmp_path / "fleet.db"), client_id="c-out")
    log = procs.root / "collector-c-out.log"
    wait_for(lambda: "retrying every" in log.read_text(), 30, "the outage to be reported")
    time.sleep(4)  # several failed attempts (1, 2 s apart): still one line
    try:
        mq.start()
        wait_for(lambda: "collector: subscribed" in log.read_text(), 30, "the collector to subscribe")
        text = log.read_text()
        assert text.count("retrying every 1 to 10 s") == 1, text
        assert f"broker {mq.url}: connected again" in text
    finally:
        mq.stop()
