"""The ARM check: the agent on 64-bit ARM, installed and served as on a board.

    sudo .venv/bin/python tools/arm_check.py      (CI: .ci/run runs it after the suite)

In a copy of the cached Debian 12 arm64 root (``tools/arm_root.py``; qemu-user emulation,
so it stands for a Raspberry Pi 4/5 or Jetson on a 64-bit OS, not for their speed):

1. builds the wheel of this checkout and installs it with ``tools/install_agent.sh
   --wheel ... --runtime tflite`` (never a name from the index), into the root's own
   /opt/edge-agent, /var/lib/edge-agent, /etc/systemd/system; checks the user, the store,
   the trusted key and the unit (``systemd-analyze verify --root``);
2. serves the digits int8 ``.tflite`` bundle there and compares every answer with this
   x86-64 run of the same bundle; then asks for the int8 ``.onnx`` bundle, which the
   TFLite-only install must refuse naming the ``agent-onnx`` extra; installs that extra
   and compares the ONNX answers the same way;
3. as the ``edge-agent`` user: ``edge-agent install --store`` of a signed v1.0.0, a swap to
   v1.1.0, a tampered v1.2.0 refused with the store untouched, a rollback to v1.0.0, and
   ``edge-agent run --store`` serving it with the x86 answers;
4. in a Debian 12 armhf root (armv7l, standing for 32-bit Raspberry Pi OS): the installer
   refuses at once naming the cause, and the agent (from the checkout, with Debian's numpy)
   warns at start and exits 2 with one error line when asked to serve.

Agreement rule. int8 kernels differ between CPUs by at most a rounding step per
requantization (XNNPACK and MLAS use different instruction sequences on NEON and AVX),
so exact equality is not promised. Take s, the scale of the last int8 tensor before the
logits; if every logit moves by at most one step s, the top-1 softmax probability moves by
at most s/2 (the sum of its partial derivatives is 2p(1-p) <= 1/2), and the top two
labels can swap only if their logits were within 2s, i.e. only if the x86 top-1
probability is at most sigmoid(2s). So the check requires: every confidence within s/2
of x86's, and the same label wherever x86's confidence exceeds sigmoid(2s). It prints
how many labels agree in all and the largest confidence difference.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import arm_root  # noqa: E402

STORE = "/var/lib/edge-agent"
AGENT = "/opt/edge-agent/venv/bin/edge-agent"
HOST_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass(frozen=True)
class Bundles:
    tflite: Path
    onnx: Path
    test: Path
    key: Path  # private key; key.pub beside it
    steps: dict[str, float]  # bundle name -> output step s (see the module docstring)


def say(msg: str) -> None:
    print(f"arm check: {msg}", flush=True)


def host(argv: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, env=HOST_ENV, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv[:4])} ... failed on the host:\n{done.stdout[-2000:]}"
                         f"{done.stderr[-2000:]}")
    return done


def build_wheel(out: Path) -> Path:
    host([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
          str(ROOT)])
    return next(out.glob("edgekit_sdk-*.whl"))


def make_bundles(work: Path) -> Bundles:
    """The digits LeNet as ``edge optimize --int8`` ships it, for .tflite and for .onnx."""
    from edge_sdk.bundle.signing import new_key_pair
    from edge_sdk.demo.digits import train

    art = train(work / "digits", epochs=3)
    out = {}
    for target in ("tflite", "onnx"):
        out[target] = work / f"digits-{target}.edgepkg"
        host([sys.executable, "-m", "edge_sdk", "optimize", str(art.model), "--data", str(art.train),
              "--int8", "--target", target, "--no-step-metrics", "--runs", "3", "--version", "1.0.0",
              "-o", str(out[target])])
    key = new_key_pair(work / "fleet-key").private
    steps = {target: output_step(out[target], work / f"unpacked-{target}") for target in out}
    return Bundles(out["tflite"], out["onnx"], art.test, key, steps)


def output_step(bundle: Path, dest: Path) -> float:
    """The scale of the bundle's last int8 tensor before its (float or int8) logits."""
    from device_agent.bundle import open_bundle
    from device_agent.protocol.manifest import ModelFormat

    b = open_bundle(bundle, dest)
    spec = b.manifest.files[0].outputs[0]
    if spec.scale:
        return float(spec.scale)
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(b.model_path(ModelFormat.ONNX)))
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    name = model.graph.output[0].name
    while name in producers:
        node = producers[name]
        if node.op_type == "DequantizeLinear":
            return float(inits[node.input[1]].max())
        name = node.input[0]
    raise SystemExit(f"error: {bundle}: no DequantizeLinear before the output; cannot bound int8 rounding")


def signed_version(src: Path, version: str, key: Path, out: Path, *, tamper: bool = False) -> Path:
    """``src`` as another signed version; ``tamper`` flips a model byte after signing."""
    from device_agent.bundle import read_members
    from device_agent.protocol.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
    from edge_sdk.bundle.signing import load_signer
    from edge_sdk.bundle.writer import write_archive

    members = read_members(src)
    manifest = replace(Manifest.from_json(members.pop(MANIFEST_NAME)), version=version)
    members.pop(SIGNATURE_NAME, None)
    data = manifest.to_json()
    if tamper:
        path = manifest.files[0].path
        members[path] = members[path][:-1] + bytes([members[path][-1] ^ 1])
    entries = [(MANIFEST_NAME, data), (SIGNATURE_NAME, load_signer(key)(data)), *sorted(members.items())]
    return write_archive(out, entries)


def answers(stdout: str) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [r for r in rows if "summary" not in r]


def host_has_vnni() -> bool:
    """Whether this x86-64 CPU has VNNI (AVX-512 VNNI or AVX-VNNI)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def compare(name: str, x86: list[dict[str, object]], arm: list[dict[str, object]], step: float,
            *, bound_confidence: bool = True) -> str:
    """Apply the agreement rule of the module docstring; the line to print, or SystemExit.

    ``bound_confidence=False`` keeps the label rule but only reports the confidence
    difference: ONNX Runtime's int8 kernels on an x86-64 CPU without VNNI multiply u8 by s8
    with 16-bit intermediate sums that can saturate (ONNX Runtime's documentation says so),
    so there the x86 reference itself is off by more than a rounding step."""
    if len(x86) != len(arm) or not x86:
        raise SystemExit(f"error: {name}: {len(arm)} answers on arm64, {len(x86)} on x86-64")
    tol, sure = (step / 2 if bound_confidence else math.inf) + 1e-6, 1 / (1 + math.exp(-2 * step))
    same = sum(a["label"] == b["label"] for a, b in zip(x86, arm, strict=True))
    worst = max(abs(float(a["confidence"]) - float(b["confidence"])) for a, b in zip(x86, arm, strict=True))  # type: ignore[arg-type]
    for a, b in zip(x86, arm, strict=True):
        conf = float(a["confidence"])  # type: ignore[arg-type]
        if abs(conf - float(b["confidence"])) > tol or (a["label"] != b["label"] and conf > sure):  # type: ignore[arg-type]
            raise SystemExit(f"error: {name}: input {a['input_id']} x86 {a['label']}@{conf:.6f}, arm64 "
                             f"{b['label']}@{b['confidence']}; allowed |diff| <= {tol:.4f} and the same label "
                             f"above confidence {sure:.3f} (output step {step:.4f})")
    acc = sum(r["label"] == str(r.get("truth")) for r in arm) / len(arm)
    allowed = (f"allowed {tol:.4f} = half the output step {step:.4f}" if bound_confidence else
               "not bounded: this x86-64 CPU has no VNNI, where ONNX Runtime's u8s8 int8 kernels can saturate")
    return (f"{name}: {same}/{len(x86)} labels agree with x86-64, max |confidence diff| {worst:.6f} "
            f"({allowed}); arm64 accuracy {acc:.4f}")


def user_ids(root: Path, name: str) -> str:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == name:
            return f"{f[2]}:{f[3]}"
    raise SystemExit(f"error: the installer created no user {name} in the arm64 root")


def install_with_script(r: arm_root.Chroot, wheel: str, key_pub: Path) -> list[str]:
    r.put(ROOT / "tools/install_agent.sh", "/src/tools/install_agent.sh")
    r.put(ROOT / "tools/edge-agent.service", "/src/tools/edge-agent.service")
    r.put(ROOT / "tools/agent.toml", "/src/tools/agent.toml")  # the installer copies it beside its config
    key = r.put(key_pub, "/src/fleet-key.pub")
    done = r.run(["bash", "/src/tools/install_agent.sh", "--wheel", wheel, "--runtime", "tflite",
                  "--key", key, "--device-type", "rpi4", "--source", f"file:{STORE}/input.npz"])
    p = r.path
    for f in (AGENT, f"{STORE}/keys/fleet-key.pub", "/etc/systemd/system/edge-agent.service",
              "/etc/edge-agent/agent.toml"):
        if not (p / f.lstrip("/")).exists():
            raise SystemExit(f"error: after install_agent.sh, {f} is missing in the arm64 root:\n{done.stderr}")
    heavy = "import importlib.util as u; print([m for m in ('tensorflow', 'onnxruntime', 'zstandard', " \
        "'cryptography', 'pydantic') if u.find_spec(m)])"
    pulled = r.run(["/opt/edge-agent/venv/bin/python", "-c", heavy]).stdout.strip()
    if pulled != "[]":
        raise SystemExit(f"error: the TFLite-only device install pulled {pulled}")
    notes = [f"install_agent.sh --wheel --runtime tflite: user edge-agent {user_ids(p, 'edge-agent')}, "
             f"{AGENT}, {STORE}/keys/fleet-key.pub, /etc/systemd/system/edge-agent.service; "
             "no tensorflow, onnxruntime, zstandard, cryptography or pydantic"]
    return [*notes, verify_unit(p)]


def verify_unit(root: Path) -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return "unit: systemd-analyze not on this host, not verified"
    done = subprocess.run([tool, "verify", f"--root={root}", "/etc/systemd/system/edge-agent.service"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: systemd-analyze verify of the installed unit failed:\n{done.stderr}")
    return "unit: systemd-analyze verify --root=<arm64 root> edge-agent.service: ok"


def serve(r: arm_root.Chroot, bundle: str, test: str, *, user: str | None = None,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    return r.run([AGENT, "run", bundle, "--source", f"file:{test}"], check=check, user=user)


def store_flow(r: arm_root.Chroot, b: Bundles, work: Path, test: str, x86: list[dict[str, object]]) -> list[str]:
    user = user_ids(r.path, "edge-agent")
    paths = {}
    for version, tamper in (("1.0.0", False), ("1.1.0", False), ("1.2.0", True)):
        local = signed_version(b.tflite, version, b.key, work / f"digits-{version}.edgepkg", tamper=tamper)
        paths[version] = r.put(local, f"/src/digits-{version}.edgepkg")
    r.run(["chmod", "-R", "a+rX", "/src"])

    def status() -> dict[str, object]:
        out: dict[str, object] = json.loads(r.run([AGENT, "status", "--store", STORE], user=user).stdout)
        return out

    def install(version: str) -> dict[str, object]:
        done = r.run([AGENT, "install", paths[version], "--store", STORE], user=user, check=False)
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {"stderr": done.stderr}

    lines = []
    for version in ("1.0.0", "1.1.0"):
        res = install(version)
        if res.get("status") != "active":
            raise SystemExit(f"error: edge-agent install {version} in the arm64 root: {res}")
    st = status()
    if st["version"] != "1.1.0" or st["previous"] is None:
        raise SystemExit(f"error: after the swap to 1.1.0 the store reads {st}")
    lines.append(f"store: install 1.0.0 active, swap to 1.1.0 active (previous {st['previous']})")
    res = install("1.2.0")
    if res.get("status") != "rejected" or status()["version"] != "1.1.0":
        raise SystemExit(f"error: a tampered 1.2.0 was not refused cleanly: {res}")
    lines.append(f"store: tampered 1.2.0 {res['status']} ({str(res.get('reason'))[:70]}...), still 1.1.0")
    py = "from device_agent.update.store import ModelStore; print(ModelStore('%s').rollback().manifest.version)"
    back = r.run(["/opt/edge-agent/venv/bin/python", "-c", py % STORE], user=user).stdout.strip()
    if back != "1.0.0" or status()["version"] != "1.0.0":
        raise SystemExit(f"error: rollback restored {back!r}, the store reads {status()}")
    served = answers(r.run([AGENT, "run", "--store", STORE, "--source", f"file:{test}"], user=user).stdout)
    lines.append("store: rollback to 1.0.0; " + compare("edge-agent run --store", x86, served, b.steps["tflite"]))
    return lines


def armhf_refusal(bundle: Path, test: Path, base: Path | None = None) -> list[str]:
    """On a 32-bit ARM root (armv7l, as 32-bit Raspberry Pi OS): the installer stops at once,
    and the agent, started from a checkout with Debian's numpy (its CLI is the standard
    library's argparse), says why at start and exits 2 when asked to serve."""
    env = {k: v for k, v in arm_root.ENV.items() if k != "QEMU_CPU"}
    with arm_root.session(base or arm_root.ensure_root(arm_root.ARMHF), env=env) as r:
        machine = r.run(["uname", "-m"]).stdout.strip()
        script = r.put(ROOT / "tools/install_agent.sh", "/src/tools/install_agent.sh")
        r.put(ROOT / "device_agent", "/src/checkout/device_agent")
        b, t = r.put(bundle, "/src/digits.edgepkg"), r.put(test, "/src/test.npz")
        inst = r.run(["bash", script, "--dry-run"], check=False)
        if inst.returncode != 2 or "32-bit ARM system" not in inst.stderr or inst.stdout:
            raise SystemExit(f"error: on {machine} the installer did not refuse at once: {inst.stderr}{inst.stdout}")
        agent = r.run(["env", "PYTHONPATH=/src/checkout", "python3", "-m", "device_agent", "run", b,
                       "--source", f"file:{t}"], check=False)
        lines = [ln for ln in agent.stderr.strip().splitlines()
                 if not ln.startswith("warning: no trusted public keys")]  # said on any platform
        if (agent.returncode != 2 or len(lines) != 2 or not lines[0].startswith("warning: this is a 32-bit ARM")
                or not lines[1].startswith("error: ") or "32-bit ARM system" not in lines[1]):
            raise SystemExit(f"error: on {machine} the agent did not refuse clearly (exit {agent.returncode}): "
                             f"{agent.stderr[-1500:]}")
    return [f"{machine} (32-bit Raspberry Pi OS stand-in): installer exit 2: {inst.stderr.strip()[:110]}...",
            f"{machine}: edge-agent run exit 2: {lines[1][:140]}..."]


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("error: the ARM check needs root (mount, chroot); run it with sudo")
    t0 = time.monotonic()
    arm_root.ensure_emulation("aarch64")
    arm_root.ensure_emulation("arm")
    # A cold cache builds both roots at once: mmdebstrap under emulation keeps one core busy.
    pool = concurrent.futures.ThreadPoolExecutor(1)
    armhf = pool.submit(arm_root.ensure_root, arm_root.ARMHF)
    base = arm_root.ensure_root()
    say(f"arm64 root {base} ready after {time.monotonic() - t0:.0f} s")
    report: list[str] = []
    with tempfile.TemporaryDirectory(prefix="arm-check-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        b = make_bundles(work)
        x86 = {t: answers(host([sys.executable, "-m", "device_agent", "run", str(p), "--source",
                                 f"file:{b.test}"]).stdout) for t, p in (("tflite", b.tflite), ("onnx", b.onnx))}
        say(f"wheel, bundles and x86-64 answers ready after {time.monotonic() - t0:.0f} s")
        with arm_root.session(base) as r:
            whl = r.put(wheel, f"/src/dist/{wheel.name}")
            test = r.put(b.test, "/src/test.npz")
            tfl, onx = r.put(b.tflite, "/src/digits-tflite.edgepkg"), r.put(b.onnx, "/src/digits-onnx.edgepkg")
            machine = r.run(["uname", "-m"]).stdout.strip()
            pyver = r.run(["python3", "-V"]).stdout.strip()
            report.append(f"root: Debian 12 {machine}, {pyver}")
            report += install_with_script(r, whl, Path(str(b.key) + ".pub"))
            say(f"installed after {time.monotonic() - t0:.0f} s")
            report.append(compare("int8 .tflite (LiteRT)", x86["tflite"], answers(serve(r, tfl, test).stdout),
                                  b.steps["tflite"]))
            refused = serve(r, onx, test, check=False)
            if refused.returncode != 2 or "pip install 'edgekit-sdk[agent-onnx]'" not in refused.stderr:
                raise SystemExit(f"error: the TFLite-only install did not refuse the .onnx bundle naming the "
                                 f"agent-onnx extra (exit {refused.returncode}): {refused.stderr[-500:]}")
            report.append(f"TFLite-only install, .onnx bundle: {refused.stderr.strip()}")
            r.run(["/opt/edge-agent/venv/bin/pip", "install", "-q", f"{whl}[agent-onnx]"])
            report.append(compare("int8 .onnx (ONNX Runtime)", x86["onnx"], answers(serve(r, onx, test).stdout),
                                  b.steps["onnx"], bound_confidence=host_has_vnni()))
            say(f"answers compared after {time.monotonic() - t0:.0f} s")
            report += store_flow(r, b, work, test, x86["tflite"])
        say(f"arm64 done after {time.monotonic() - t0:.0f} s")
        report += armhf_refusal(b.tflite, b.test, armhf.result())
        pool.shutdown()
    for line in report:
        say(line)
    say(f"passed in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
