"""Every option README shows on an ``edge``/``edge-agent`` command line exists in that
command's ``--help`` (README → help direction)."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from edge_sdk.cli import app as edge_app
from tests.support.agent_cli import agent_commands, agent_help

ROOT = Path(__file__).resolve().parents[2]
# A command, then its words and options up to the end of the shell command.
COMMAND = re.compile(r"(?<![\w/.-])(edge-agent|edge)(?![\w-])((?:\s+[a-z][a-z-]*)*)((?:\\\n|[^`|#\n;&]|&(?![&\s]))*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


def _command_words(tool: str, words: list[str]) -> list[str]:
    """The longest prefix of ``words`` that names a (sub)command of ``tool``."""
    import typer

    if tool == "edge-agent":  # commands one level deep
        return words[:1] if words and words[0] in agent_commands() else []
    cmd = typer.main.get_command(edge_app)
    out: list[str] = []
    for w in words:
        sub = getattr(cmd, "commands", {}).get(w)
        if sub is None:
            break
        out.append(w)
        cmd = sub
    return out


def _help(tool: str, words: list[str]) -> str:
    if tool == "edge-agent":
        return agent_help(*words)
    res = CliRunner(env={"COLUMNS": "200"}).invoke(edge_app, [*words, "--help"])
    assert res.exit_code == 0, res.output
    return str(res.stdout)


def readme_uses() -> dict[tuple[str, tuple[str, ...]], set[str]]:
    text = (ROOT / "README.md").read_text()
    uses: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for m in COMMAND.finditer(text):
        tool, words, rest = m.group(1), m.group(2).split(), m.group(3)
        if not words and rest.lstrip().startswith("/"):
            continue  # a user or folder name (sudo -u edge-agent /opt/...), not a command line
        cmd = _command_words(tool, words)
        options = set(OPTION.findall(" ".join(words[len(cmd):]) + " " + rest))
        uses.setdefault((tool, tuple(cmd)), set()).update(options)
    return uses


def test_every_readme_option_is_in_help() -> None:
    missing = []
    uses = readme_uses()
    assert len(uses) > 15  # the parser found README's commands
    for (tool, cmd), options in sorted(uses.items()):
        text = _help(tool, list(cmd))
        for opt in sorted(options):
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text):
                missing.append(f"{tool} {' '.join(cmd)} {opt}")
    assert not missing, missing
