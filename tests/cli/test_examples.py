"""Every command's ``--help`` ends with examples, and the examples' options exist; every
option has help and a metavar that says what to type."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from device_agent.cli_examples import EXAMPLES as AGENT_EXAMPLES
from edge_sdk.cli import app as edge_app
from edge_sdk.cli.examples import EXAMPLES
from tests.cli.test_readme_options import OPTION
from tests.support.agent_cli import agent_commands, agent_help

runner = CliRunner(env={"COLUMNS": "200"})


def _leaves(cmd: Any, prefix: str = "") -> list[str]:
    subs = getattr(cmd, "commands", None)
    if subs is None:
        return [prefix.strip()]
    return [p for name, c in subs.items() for p in _leaves(c, f"{prefix}{name} ")]


def _edge_help(path: str) -> str:
    return str(runner.invoke(edge_app, [*path.split(), "--help"]).stdout)


TOOLS: dict[str, tuple[Callable[[], list[str]], Callable[[str], str], dict[str, tuple[str, ...]]]] = {
    "edge": (lambda: _leaves(typer.main.get_command(edge_app)), _edge_help, EXAMPLES),
    "edge-agent": (lambda: list(agent_commands()), lambda path: agent_help(*path.split()), AGENT_EXAMPLES),
}


@pytest.mark.parametrize("tool", TOOLS)
def test_every_command_has_working_examples(tool: str) -> None:
    leaves, help_of, examples = TOOLS[tool]
    missing = [c for c in leaves() if c not in examples]
    assert not missing, f"commands without examples: {missing}"
    for path, lines in examples.items():
        text = help_of(path)
        assert "Examples:" in text, path
        for line in lines:
            assert line.startswith(f"{tool} {path}"), line
            assert line.split("  #")[0].strip() in text, (path, line)
            for opt in OPTION.findall(line.split("#")[0]):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text.split("Examples:")[0]), (
                    path, opt)


def test_every_edge_option_has_help_and_a_real_metavar() -> None:
    bare = []
    for path in _leaves(typer.main.get_command(edge_app)):
        text = _edge_help(path).split("Examples:")[0]
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


def test_every_agent_option_has_help_and_a_real_metavar() -> None:
    """On the parser itself: every argument and option has help, every option that takes a
    value a metavar other than a type's name; and the help text shows each with it."""
    bare = []
    for name, sub in agent_commands().items():
        text = agent_help(name).split("Examples:")[0]
        shown = " ".join(text.split())
        for action in sub._actions:
            label = "/".join(action.option_strings) or str(action.metavar)
            if not (action.help or "").strip():
                bare.append(f"{name} {label}: no help")
            elif " ".join(action.help.split()) not in shown:
                bare.append(f"{name} {label}: help not shown")
            if action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue  # a flag
            mv = action.metavar
            if not isinstance(mv, str) or not re.fullmatch(r"\S+", mv) or mv.upper() in (
                    "TEXT", "INTEGER", "FLOAT", "STR", "INT"):
                bare.append(f"{name} {label}: metavar {mv!r}")
            for flag in action.option_strings:
                if not re.search(rf"(?<![\w-]){re.escape(flag)} {re.escape(str(mv))}(?![\w])", text):
                    bare.append(f"{name} {flag}: not shown as '{flag} {mv}'")
    assert not bare, bare
