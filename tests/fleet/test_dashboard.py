"""The web dashboard in a real headless Chromium (Debian's), over what a real collector
stored from a real Mosquitto; and the HTTP server's exposure rules without a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol import topics
from device_agent.protocol.messages import DeployPhase, DeployStatus, State, Status, TelemetryWindow
from edge_sdk.fleet.store import open_store
from tests.fleet.conftest import ENV, REPO, sqlite_rows, wait_for
from tests.fleet.test_reliability import collector_up

sys.path.insert(0, str(REPO / "tools"))

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a browser that must not phone home or need a display.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
SHOTS = Path(os.environ.get("EDGE_TEST_SCREENSHOTS", "")) if os.environ.get("EDGE_TEST_SCREENSHOTS") else None


def dashboard_url(log: Path) -> str:
    m = wait_for(lambda: re.search(r"dashboard:? (http://\S+)", log.read_text()), 30, "dashboard url")
    return m.group(1)  # type: ignore[no-any-return]


def publish(url: str, msgs: list[tuple[str, bytes, bool]]) -> None:
    c = MqttClient(BrokerOptions(url=url, client_id=f"dash-pub-{time.monotonic_ns()}"))
    c.start()
    assert c.wait_connected(10)
    for info in [c.publish(t, p, qos=1, retain=r) for t, p, r in msgs]:
        info.wait_for_publish(10)
    c.stop()


def window(boot: str, seq: int, end: float, p50: float = 2.0) -> bytes:
    return TelemetryWindow(
        seq=seq, boot_id=boot, start=end - 60, end=end, inferences=600, errors=1, throughput=10.0,
        latency_p50=p50, latency_p95=p50 * 1.7, latency_p99=p50 * 2.2, cache_hits=150,
        exits={"0": 420, "1": 180}, cpu_percent=30.0, rss_bytes=60 * 2**20, temperature_c=51.0,
        model_version="1.2.0",
    ).to_payload()  # fmt: skip


def seed_fleet(url: str, db: Path) -> None:
    """Eight simulated devices with 90 one-minute windows each through the broker, one
    device gone offline, a rollout with its devices' reports, and the alerts it raises."""
    from fleet_sim import SimOptions, simulate

    simulate(SimOptions(broker=url, devices=8, windows=90, fleet="lab", interval_s=60, rate=2000))
    now = time.time()
    boot = "b" * 16
    msgs = [(topics.state("lab", "sim-00007"), State(status=Status.OFFLINE, boot_id=boot, ts=now, clean=True,
                                                     model_name="sim-model").to_payload(), True)]  # fmt: skip
    for i, phase in enumerate([DeployPhase.ACTIVE, DeployPhase.PROBATION_PASSED, DeployPhase.DOWNLOADING]):
        st = DeployStatus(rollout="r-2024", version="1.1.0", status=phase, reason="", boot_id=boot, ts=now - 30 + i)
        msgs.append((topics.deploy_status("lab", f"sim-0000{i}"), st.to_payload(), False))
    publish(url, msgs)
    wait_for(lambda: sqlite_rows(db, "SELECT COUNT(*) FROM deploy_status")[0][0] == 3, 30, "deploy reports")
    store = open_store(str(db))
    store.start_rollout(
        {"rollout_id": "r-2024", "fleet": "lab", "bundle": "sim-model-1.1.0.edgepkg", "name": "sim-model",
         "version": "1.1.0", "device_group": "lab", "canary_percent": 25.0, "phase": "promoted",
         "outcome": "running", "started": now - 60, "updated": now - 20},
        canary=["sim-00000", "sim-00001"], rest=[f"sim-0000{i}" for i in range(2, 8)],
    )  # fmt: skip
    store.close()
    subprocess.run([sys.executable, "-m", "edge_sdk", "fleet", "alerts", "--db", str(db), "--offline-after", "0"],
                   env=ENV, check=True, capture_output=True)  # fmt: skip


@pytest.fixture
def browser() -> Any:
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; tools/ensure_services.sh does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) drives chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class PageProblems:
    """Console errors, uncaught exceptions and failed requests of one page."""

    def __init__(self, page: Any):
        self.items: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.items.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.items.append(f"exception: {e}"))
        page.on("requestfailed", lambda r: "/api/events" not in r.url and self.items.append(f"failed: {r.url}"))
        page.on("response", lambda r: r.status >= 400 and self.items.append(f"HTTP {r.status}: {r.url}"))


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / path.name)
    print(f"\nscreenshot for a person: {path}")
    return path


def test_dashboard_in_chromium_shows_the_stored_fleet_and_updates_live(broker, procs, tmp_path, browser) -> None:  # type: ignore[no-untyped-def]
    mq, db = broker(), tmp_path / "fleet.db"
    collector_up(procs, mq.url, db, extra=("--http", "127.0.0.1:0"))
    url = dashboard_url(procs.root / "collector-c1.log")
    seed_fleet(mq.url, db)
    wait_for(lambda: sqlite_rows(db, "SELECT COUNT(*) FROM telemetry")[0][0] == 720, 30, "720 windows stored")

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    problems = PageProblems(page)
    page.goto(url)
    page.wait_for_selector("#fleet-table tbody tr[data-device='sim-00007']")
    page.wait_for_selector(".live.on")
    rows = page.locator("#fleet-table tbody tr")
    assert rows.count() == 8
    assert page.locator("tr[data-device='sim-00007'] .badge").inner_text() == "offline"
    assert page.locator("tr[data-device='sim-00003'] .badge").inner_text() == "online"
    latest = "SELECT latency_p95 FROM telemetry WHERE device='sim-00003' ORDER BY end_ts DESC"
    stored_p95 = sqlite_rows(db, latest)[0][0]
    assert f"{stored_p95:.2f}" in page.locator("tr[data-device='sim-00003']").inner_text()
    shot(page, tmp_path, "fleet")

    # Sorting and filtering happen in the page.
    page.click("th:has-text('p95 ms')")
    page.click("th:has-text('p95 ms')")  # descending
    first = page.locator("#fleet-table tbody tr").first.get_attribute("data-device")
    worst = sqlite_rows(db, "SELECT device, MAX(end_ts), latency_p95 FROM telemetry GROUP BY device ORDER BY 3 DESC")
    assert first == worst[0][0]
    page.select_option("#filter-status", "offline")
    expect(page.locator("#fleet-table tbody tr")).to_have_count(1)
    page.select_option("#filter-status", "")
    expect(page.locator("#fleet-table tbody tr")).to_have_count(8)

    # A window from a device never seen before reaches the open page without a reload.
    rendered = int(page.evaluate("document.body.dataset.rendered"))
    publish(mq.url, [(topics.telemetry("lab", "late-01"), window("c" * 16, 0, time.time()), False)])
    page.wait_for_selector("#fleet-table tbody tr[data-device='late-01']", timeout=15_000)
    assert int(page.evaluate("document.body.dataset.rendered")) > rendered
    expect(page.locator("#fleet-table tbody tr")).to_have_count(9)

    # The device page: every chart drawn from the stored windows, its deployments and alerts.
    page.click("a:has-text('sim-00001')")
    page.wait_for_selector("figure.chart svg path")
    assert page.locator("figure.chart").count() == 8
    assert page.locator("figure.chart:has-text('Latency') path[stroke]").count() == 3
    assert page.locator("#deploys tbody tr").count() == 1
    assert "probation-passed" in page.locator("#deploys").inner_text()
    shot(page, tmp_path, "device")
    # A week: the charts come from the hourly rollups instead of the raw windows.
    page.click("button[data-range='604800']")
    page.wait_for_selector("button.active[data-range='604800']")
    page.wait_for_selector("figure.chart:has-text('Throughput') svg path[stroke]")

    page.click("nav a[data-tab='rollouts']")
    page.wait_for_selector("article.rollout")
    assert "2/2 active" in page.locator(".progress-row:has-text('canary')").inner_text()
    assert "0/6 active · 1 updating" in page.locator(".progress-row:has-text('rest')").inner_text()
    shot(page, tmp_path, "rollouts")
    page.click("nav a[data-tab='alerts']")
    page.wait_for_selector("#alerts tbody tr")
    assert "offline" in page.locator("#alerts").inner_text()
    shot(page, tmp_path, "alerts")

    metrics = urllib.request.urlopen(url + "metrics", timeout=5).read().decode()
    assert "edge_collector_windows_stored_total 721" in metrics  # one server: dashboard and /metrics
    assert problems.items == [], problems.items
    page.close()


def get(url: str, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_fleet_ui_needs_a_token_beyond_loopback_and_is_read_only(procs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "fleet.db"
    open_store(str(db)).close()
    refused = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "fleet", "ui", "--db", str(db), "--http", "0.0.0.0:0"],
        env={k: v for k, v in ENV.items() if k != "EDGE_HTTP_TOKEN"}, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: --http 0.0.0.0:0: listening beyond loopback needs a token")
    assert len(refused.stderr.strip().splitlines()) == 1

    procs.spawn(["-m", "edge_sdk", "fleet", "ui", "--db", str(db), "--http", "0.0.0.0:0",
                 "--http-token", "s3cret"], "ui")  # fmt: skip
    port = re.search(r":(\d+)/", dashboard_url(procs.root / "ui.log")).group(1)  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    assert get(base + "/api/fleet")[0] == 401
    assert get(base + "/api/fleet", Authorization="Bearer wrong")[0] == 401
    code, body = get(base + "/api/fleet", Authorization="Bearer s3cret")
    assert code == 200 and json.loads(body)["devices"] == []
    assert get(base + "/static/../store.py", Authorization="Bearer s3cret")[0] == 404
    assert get(base + "/api/device?fleet=lab&device=x&range=1", Authorization="Bearer s3cret")[0] == 400
    post = urllib.request.Request(base + "/api/fleet", data=b"{}", method="POST",
                                  headers={"Authorization": "Bearer s3cret"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(post, timeout=5)
    assert e.value.code == 405
    # The link with ?token= sets a cookie and leaves the token out of the address bar.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    page = opener.open(base + "/?token=s3cret", timeout=5)
    assert page.url == base + "/" and b"/static/app.js" in page.read()
    assert opener.open(base + "/api/alerts", timeout=5).status == 200


def test_every_dashboard_asset_ships_as_package_data() -> None:
    """The page's files come from the installed package: pyproject must include them."""
    from fnmatch import fnmatch

    from edge_sdk.fleet.http_server import STATIC

    section = (REPO / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1]
    line = re.search(r"^edge_sdk = \[(.*)\]$", section, re.M)
    assert line, "edge_sdk's package-data"
    globs = json.loads(f"[{line.group(1)}]")
    for name in STATIC:
        assert (REPO / "edge_sdk" / "fleet" / "static" / name).is_file(), name
        assert any(fnmatch(f"fleet/static/{name}", g) for g in globs), name
    html = (REPO / "edge_sdk" / "fleet" / "static" / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "no asset from another origin"
