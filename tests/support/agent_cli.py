"""``edge-agent`` in the test's own process: :func:`device_agent.cli.main` with its output
captured, as the console script runs it (``sys.exit(main())``), and its parser to walk."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

from device_agent.cli import main, parser


@dataclass(frozen=True)
class AgentRun:
    """What one ``edge-agent`` command line did."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def agent(*args: str, env: dict[str, str] | None = None) -> AgentRun:
    """Run ``edge-agent ARGS`` (with ``env`` set meanwhile); its exit code and output."""
    out, err = io.StringIO(), io.StringIO()
    with _environ(env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return AgentRun(code, out.getvalue(), err.getvalue())


def agent_help(*words: str, columns: int = 200) -> str:
    """``edge-agent WORDS --help`` at ``columns`` wide (exit code 0 checked)."""
    res = agent(*words, "--help", env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.output
    return res.stdout


def agent_commands() -> dict[str, argparse.ArgumentParser]:
    """Every ``edge-agent`` command and its parser."""
    subs = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subs.choices)
