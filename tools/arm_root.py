"""A Debian 12 arm64 root under qemu-user emulation: built once, cached, used in copies.

The root stands for a 64-bit Raspberry Pi OS (bookworm: Python 3.11, the same Debian
packages) or Jetson Linux board. It is built with ``mmdebstrap`` and cached under
``~/.cache/edge-sdk/arm64-root-<key>`` (``EDGE_SDK_CACHE`` moves the cache), where the key
is a hash of everything that defines it (:data:`RECIPE`), so a change of recipe builds a
new one and a fresh machine builds it once. Each use works in a throwaway copy with
``/proc``, ``/sys`` and ``/dev`` bound in (pip and ONNX Runtime need them; ``/proc/cpuinfo``
is a Pi 4's, see :data:`CPUINFO`) and a pip
cache kept across runs, so wheels are downloaded once per machine.

Needs root (mount, chroot) on a Debian-like x86-64 host; installs ``qemu-user-static``,
``binfmt-support`` and ``mmdebstrap`` with apt-get when missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

RECIPE = {
    "suite": "bookworm",
    "arch": "arm64",
    "variant": "apt",
    # systemd: so install_agent.sh enables the unit as on a board, and systemd-analyze
    # verify --root finds the targets the unit refers to.
    "include": "python3,python3-venv,python3-pip,ca-certificates,systemd",
    "recipe": 1,  # bump when the build steps below change
}
# A 32-bit Raspberry Pi OS stand-in (armv7l): no runtime wheels exist for it, so it gets
# only what proves the refusal: bash for the installer, Debian's python3 with numpy to start
# the agent from a checkout (python3-typer is no longer used: the agent's CLI is argparse;
# kept so that machines' cached roots stay valid).
ARMHF = {"suite": "bookworm", "arch": "armhf", "variant": "essential",
         "include": "python3,python3-numpy,python3-typer", "recipe": 1}
QEMU = {"arm64": "aarch64", "armhf": "arm"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# What a Raspberry Pi 4 (Cortex-A72) shows in /proc/cpuinfo. Under qemu-user the root would
# otherwise see the x86 host's, and ONNX Runtime's CPU probe (cpuinfo) crashes on it with
# SIGSEGV at import; LiteRT does not read it.
CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\n" for i in range(4)
) + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
# What a command in the root sees: nothing of the host's environment leaks in. QEMU_CPU:
# emulate a Raspberry Pi 4's Cortex-A72 (ARMv8.0), not qemu's default "max" CPU. On "max"
# XNNPACK picks kernels for extensions a Pi does not have (SVE, i8mm, ...) and qemu 7.2
# computes them wrongly: the digits bundle answers 7 or 4 for every input there, and the
# same answers as x86-64 on cortex-a72.
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
       "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "180",
       "QEMU_CPU": "cortex-a72"}


def log(msg: str) -> None:
    print(f"arm: {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("EDGE_SDK_CACHE", Path.home() / ".cache" / "edge-sdk"))


def key(recipe: dict[str, object] = RECIPE) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def cached_root(recipe: dict[str, object] = RECIPE) -> Path:
    return cache_dir() / f"{recipe['arch']}-root-{key(recipe)}"


def ensure_emulation(qemu: str = "aarch64") -> None:
    """qemu-user-static registered for ``qemu`` binaries (F flag: works inside a chroot)."""
    if shutil.which("mmdebstrap") is None or not Path("/usr/bin/qemu-aarch64-static").exists():
        log("installing qemu-user-static binfmt-support mmdebstrap")
        apt = ["apt-get", "install", "-y", "-q", "qemu-user-static", "binfmt-support", "mmdebstrap"]
        if subprocess.run(apt, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, check=True)
            subprocess.run(apt, stdout=subprocess.DEVNULL, check=True)
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    if not (BINFMT / f"qemu-{qemu}").exists():
        subprocess.run(["update-binfmts", "--enable", f"qemu-{qemu}"], check=True)
    if "enabled" not in (BINFMT / f"qemu-{qemu}").read_text():
        raise SystemExit(f"error: qemu-{qemu} is registered with binfmt_misc but disabled")


def ensure_root(recipe: dict[str, object] = RECIPE) -> Path:
    """The cached root, built first if this machine has none for ``recipe``."""
    ensure_emulation(QEMU[str(recipe["arch"])])
    root = cached_root(recipe)
    if root.is_dir():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    log(f"building {root} (Debian {recipe['suite']} {recipe['arch']}; 5-15 minutes, once per machine)")
    subprocess.run(["mmdebstrap", f"--arch={recipe['arch']}", f"--variant={recipe['variant']}",
                    f"--include={recipe['include']}", str(recipe["suite"]), str(tmp)],
                   check=True, stdout=subprocess.DEVNULL)
    tmp.rename(root)
    return root


def _mounted_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p.startswith(prefix)]


class Chroot:
    """A working copy of the root; :meth:`run` runs a command inside it."""

    def __init__(self, path: Path, env: dict[str, str]):
        self.path = path
        self.env = env

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 1800,
            user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the root (as ``user``, "UID:GID", if given); output as text."""
        spec = [f"--userspec={user}"] if user else []
        env = {**self.env, "HOME": "/tmp"} if user else self.env
        done = subprocess.run(["chroot", *spec, str(self.path), *argv], capture_output=True, text=True,
                              env=env, timeout=timeout)
        if check and done.returncode != 0:
            raise SystemExit(f"error: in the arm64 root, {' '.join(argv)} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done

    def put(self, src: Path, dest: str) -> str:
        """Copy a host file or folder to ``dest`` inside the root; returns ``dest``."""
        target = self.path / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)
        return dest


@contextlib.contextmanager
def session(base: Path | None = None, *, env: dict[str, str] | None = None) -> Iterator[Chroot]:
    """A throwaway copy of the cached root with /proc, /sys, /dev and the pip cache bound in;
    commands see ``env`` (default :data:`ENV`)."""
    base = base or ensure_root()
    work = Path(tempfile.mkdtemp(prefix="work-", dir=cache_dir()))
    path = work / "root"
    mounted: list[Path] = []
    try:
        subprocess.run(["cp", "-a", str(base), str(path)], check=True)
        ca = path / "etc/ssl/certs/ca-certificates.crt"
        ca.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(HOST_CA, ca)  # pip's TLS, as on a board
        pip_cache = cache_dir() / "arm64-pip"
        pip_cache.mkdir(parents=True, exist_ok=True)
        (path / "root/.cache/pip").mkdir(parents=True, exist_ok=True)
        cpuinfo = work / "cpuinfo"
        cpuinfo.write_text(CPUINFO)
        binds = [("/proc", "proc"), ("/sys", "sys"), ("/dev", "dev"), (str(cpuinfo), "proc/cpuinfo"),
                 (str(pip_cache), "root/.cache/pip")]
        for src, dest in binds:
            subprocess.run(["mount", "--bind", src, str(path / dest)], check=True)
            mounted.append(path / dest)
        yield Chroot(path, ENV if env is None else env)
    finally:
        for m in reversed(mounted):
            if subprocess.run(["umount", str(m)]).returncode != 0:
                subprocess.run(["umount", "-l", str(m)])
        left = _mounted_below(path)
        if left:  # never delete through a bind mount into the host's /dev or /proc
            raise SystemExit(f"error: still mounted below {path}: {left}; not removing it")
        shutil.rmtree(work)


if __name__ == "__main__":
    print(ensure_root(ARMHF if sys.argv[1:] == ["armhf"] else RECIPE))
