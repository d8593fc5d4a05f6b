"""Top-level ``--version`` of both commands."""

from __future__ import annotations

from typer.testing import CliRunner

from device_agent import __version__ as agent_version
from device_agent.cli import app as agent_app
from edge_sdk import __version__
from edge_sdk.cli import app

runner = CliRunner()


def test_versions() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"edge {__version__}\n"
    res = runner.invoke(agent_app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"edge-agent {agent_version}\n"


def test_benchmark_help_does_not_start_the_benchmark() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for mod in ("benchmarks.compression", "benchmarks.serving", "benchmarks.fleet", "benchmarks.run"):
        run = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True,
                             cwd=root, timeout=60)
        assert run.returncode == 0 and "usage:" in run.stdout, (mod, run.stderr[-500:])


def test_optimize_old_version_spelling_warns(tmp_path: object) -> None:
    from pathlib import Path

    junk = Path(str(tmp_path)) / "m.keras"
    junk.write_bytes(b"x")
    res = runner.invoke(app, ["optimize", str(junk), "--data", str(junk), "-o", "/proc/x/m.edgepkg",
                              "--version", "1.2.3"])
    assert "warning: optimize --version is now --bundle-version" in res.output
    assert "--bundle-version" in runner.invoke(app, ["optimize", "--help"]).stdout


def test_completion_is_installable() -> None:
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in runner.invoke(agent_app, ["--help"]).stdout


def test_help_is_plain_text_that_keeps_brackets() -> None:
    out = runner.invoke(agent_app, ["run", "--help"]).stdout
    assert "mqtt://HOST[:PORT], or mqtts://HOST[:PORT]" in " ".join(out.split())  # brackets kept
    assert "<bool>" not in out and "…" not in out
    assert "[default: +]" not in runner.invoke(app, ["collector", "--help"]).stdout
    top = runner.invoke(app, ["--help"]).stdout
    commands = top[top.index("Commands:"):]
    assert "``" not in runner.invoke(app, ["deploy", "--help"]).stdout and "..." not in commands


def test_arguments_have_their_help() -> None:
    assert "A .keras/.h5/SavedModel, .onnx, .tflite, .edgepkg" in runner.invoke(app, ["inspect", "--help"]).stdout
    assert "A .edgepkg bundle, or a .tflite/.onnx file" in runner.invoke(agent_app, ["run", "--help"]).stdout
