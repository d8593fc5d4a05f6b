"""Start a real Mosquitto on loopback with an explicit config (tests, CI, benchmarks).

Never assumes 1883 is free: a system broker often holds it. The config enables
persistence so a stop/start keeps sessions and queued QoS 1 messages, and lifts the
in-flight and queue limits whose defaults (20 in flight, 1000 queued) would throttle
a collector that acknowledges after committing a batch, or silently drop messages.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from device_agent.errors import EdgeError
from edge_sdk.fleet.net import free_port

BINARY_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_binary() -> str:
    """The mosquitto executable (Debian's /usr/sbin first, then PATH)."""
    for b in BINARY_CANDIDATES:
        if os.access(b, os.X_OK):
            return b
    found = shutil.which("mosquitto")
    if not found:
        raise EdgeError("mosquitto: expected the binary in /usr/sbin or on PATH, found none")
    return found


def test_config(port: int, data_dir: Path, extra: str = "") -> str:
    """A loopback listener on ``port``, persistence in ``data_dir``, limits lifted, ``extra`` appended."""
    import getpass

    return (
        # Started as root, Mosquitto would switch to user "mosquitto", which cannot write
        # the persistence file into a private temporary folder.
        f"user {getpass.getuser()}\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {data_dir}/\n"
        "autosave_interval 1\n"
        "max_inflight_messages 1000\n"
        "max_queued_messages 0\n"
        "max_queued_bytes 0\n"
        "message_size_limit 0\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n" + extra
    )


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float, root: Path) -> None:
    """Return once ``port`` on loopback accepts connections; raise if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EdgeError(f"mosquitto exited with {proc.returncode}; see {root}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise EdgeError(f"mosquitto: port {port} not listening after {timeout} s")


class Mosquitto:
    """One broker process; :meth:`stop` and :meth:`start` may be called repeatedly."""

    def __init__(self, root: Path, *, port: int | None = None, extra_config: str = ""):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = root / "mosquitto.conf"
        self.config.write_text(test_config(self.port, root, extra_config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Start the process and wait until the port accepts connections."""
        log = (self.root / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [find_binary(), "-c", str(self.config)], stdout=log, stderr=log
        )
        wait_listening(self.proc, self.port, timeout, self.root)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: Mosquitto saves its persistence file and exits cleanly."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def main() -> None:  # python -m tests.support.mosquitto DIR (tools/mosquitto_test.sh)
    """Run one broker in DIR until Ctrl-C, printing its URL."""
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "mosquitto-test")
    m = Mosquitto(root).start()
    print(m.url, flush=True)
    try:
        while m.proc and m.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        m.stop()


if __name__ == "__main__":
    main()
