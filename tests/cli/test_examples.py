"""Every command's ``--help`` ends with examples, and the examples' options exist."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from device_agent.cli import app as agent_app
from device_agent.cli_examples import EXAMPLES as AGENT_EXAMPLES
from edge_sdk.cli import app as edge_app
from edge_sdk.cli.examples import EXAMPLES
from tests.cli.test_readme_options import OPTION

runner = CliRunner(env={"COLUMNS": "200"})


def _leaves(cmd: Any, prefix: str = "") -> list[str]:
    subs = getattr(cmd, "commands", None)
    if subs is None:
        return [prefix.strip()]
    return [p for name, c in subs.items() for p in _leaves(c, f"{prefix}{name} ")]


@pytest.mark.parametrize(("app", "tool", "examples"), [(edge_app, "edge", EXAMPLES),
                                                       (agent_app, "edge-agent", AGENT_EXAMPLES)])
def test_every_command_has_working_examples(app: Any, tool: str, examples: dict) -> None:  # type: ignore[type-arg]
    leaves = _leaves(typer.main.get_command(app))
    missing = [c for c in leaves if c not in examples]
    assert not missing, f"commands without examples: {missing}"
    for path, lines in examples.items():
        text = runner.invoke(app, [*path.split(), "--help"]).stdout
        assert "Examples:" in text, path
        for line in lines:
            assert line.startswith(f"{tool} {path}"), line
            assert line.split("  #")[0].strip() in text, (path, line)
            for opt in OPTION.findall(line.split("#")[0]):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text.split("Examples:")[0]), (
                    path, opt)


@pytest.mark.parametrize("app", [edge_app, agent_app])
def test_every_option_has_help_and_a_real_metavar(app: Any) -> None:
    import typer.main

    bare = []
    for path in _leaves(typer.main.get_command(app)):
        text = runner.invoke(app, [*path.split(), "--help"]).stdout.split("Examples:")[0]
        lines = text.splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^  (?:-\w, )?(--[\w-]+)(?: / --[\w-]+)?( [A-Z][A-Z |]*[A-Z])?(\s{2,}(.*))?$", line)
            if not m:
                continue
            if m.group(2) and m.group(2).strip() in ("TEXT", "INTEGER", "FLOAT", "INTEGER RANGE"):
                bare.append(f"{path} {m.group(1)}: metavar {m.group(2).strip()}")
            follows = lines[i + 1] if i + 1 < len(lines) else ""
            if not m.group(4) and follows.startswith(" " * 10) and not follows.strip().startswith("["):
                continue  # a long option: its help starts on the next line
            if not m.group(4) or m.group(4).startswith("["):
                bare.append(f"{path} {m.group(1)}: no help")
    assert not bare, bare
