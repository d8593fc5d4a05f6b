"""Top-level ``--version``, help and shell completion of both commands."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from device_agent import __version__ as agent_version
from edge_sdk import __version__
from edge_sdk.cli import app
from tests.support.agent_cli import agent, agent_help

runner = CliRunner()


def test_versions() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"edge {__version__}\n"
    res = agent("--version")
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
    assert "--print-completion bash" in agent_help()


def _complete(script: str, line: str) -> list[str]:
    """What bash completes for the words of ``line`` (the last one being typed) with ``script``."""
    words = line.split(" ")
    probe = (f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
             "_edge_agent; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.split()


def test_agent_completion_script_completes_commands_and_options() -> None:
    res = agent("--print-completion", "bash")
    assert res.exit_code == 0 and "complete -o default -F _edge_agent edge-agent" in res.stdout
    assert _complete(res.stdout, "edge-agent ins") == ["install"]
    assert _complete(res.stdout, "edge-agent -v run --tls-c") == ["--tls-ca", "--tls-cert"]
    assert "--probation-samples" in _complete(res.stdout, "edge-agent daemon --")
    assert "--probation-samples" not in _complete(res.stdout, "edge-agent run --")
    assert _complete(res.stdout, "edge-agent run ") == []  # a file name: bash's default completion
    bad = agent("--print-completion", "fish")
    assert bad.exit_code == 2 and "invalid choice: 'fish'" in bad.stderr


def test_help_is_plain_text_that_keeps_brackets() -> None:
    out = agent_help("run", columns=80)
    assert "mqtt://HOST[:PORT], or mqtts://HOST[:PORT]" in " ".join(out.split())  # brackets kept
    assert "<bool>" not in out and "…" not in out
    assert "[default: +]" not in runner.invoke(app, ["collector", "--help"]).stdout
    top = runner.invoke(app, ["--help"]).stdout
    commands = top[top.index("Commands:"):]
    assert "``" not in runner.invoke(app, ["deploy", "--help"]).stdout and "..." not in commands


def test_arguments_have_their_help() -> None:
    assert "A .keras/.h5/SavedModel, .onnx, .tflite, .edgepkg" in runner.invoke(app, ["inspect", "--help"]).stdout
    assert "A .edgepkg bundle, or a .tflite/.onnx file" in agent_help("run")


@pytest.mark.parametrize(("args", "names"), [
    (["run", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["run", "--lmit", "3"], ["--lmit", "did you mean --limit?"]),
    (["run", "--limit", "many"], ["argument --limit", "'many'"]),
    (["run", "--limit"], ["argument --limit: expected one argument"]),
    (["install", "x.edgepkg"], ["required", "--store"]),
    (["healthcheck"], ["required", "SLOT"]),
    (["nope"], ["invalid choice: 'nope'"]),
    (["-v"], ["required: COMMAND"]),
])  # fmt: skip
def test_agent_usage_errors_are_one_line_and_a_hint(args: list[str], names: list[str]) -> None:
    res = agent(*args)
    assert res.exit_code == 2 and res.stdout == "" and "Traceback" not in res.stderr
    error, hint = res.stderr.splitlines()
    assert error.startswith("error: ") and all(n in error for n in names), error
    command = args[0] if args[0] in ("run", "install", "healthcheck") else None
    assert hint == f"Try 'edge-agent {command + ' ' if command else ''}--help' for help."


def test_agent_without_arguments_prints_help() -> None:
    res = agent()
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("Usage: edge-agent [OPTIONS] COMMAND") and "Commands:" in res.stderr
    for args in ([], ["--help"], ["--help", "run"]):  # every command listed
        text = agent(*args).output
        assert all(f"\n  {c} " in text for c in ("run", "daemon", "listen", "install", "status", "healthcheck")), text


def test_agent_help_fits_80_columns() -> None:
    for words in [(), *((c,) for c in ("run", "daemon", "listen", "install", "status", "healthcheck"))]:
        text = agent_help(*words, columns=80).split("Examples:")[0]  # examples are printed whole
        assert max(map(len, text.splitlines())) <= 80, (words, text)


def test_edge_without_the_host_extra_names_it() -> None:
    """A device install has no typer: ``edge`` says which extra it needs, in one line."""
    import sys

    code = "import sys\nsys.modules['typer'] = None\nfrom edge_sdk.cli_entry import main\nmain()\n"
    out = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == "", out.stderr
    assert out.stderr.splitlines() == [
        "error: the edge command needs the host extra (pip install 'edgekit-sdk[host]'); "
        "on a device, the agent's command is edge-agent"]
