"""``edge-agent``'s parser: the standard library's argparse, built from the option specs of
:mod:`device_agent.cli_options`. The device imports no CLI framework: the one ``edge`` uses
cost ~60 ms of every start (``benchmarks/footprint.py``).

A :class:`Command` names its parameters and the function they are passed to, by name.
:func:`build_parser` builds the commands it is given, so ``edge-agent run`` builds ``run``
alone. Usage errors raise :class:`UsageError` rather than exit, so the caller prints one
``error:`` line and returns code 2; ``--help`` and ``--version`` raise :class:`ParserExit`.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from device_agent.cli_help import metavar
from device_agent.cli_options import Argument, Option, Param


@dataclass(frozen=True)
class Command:
    """One command: ``call`` receives every parameter's value by name and returns the exit
    code; its docstring is the command's help (the first paragraph its summary)."""

    name: str
    call: Callable[..., int]
    params: tuple[Param, ...]

    @property
    def help(self) -> str:
        return inspect.cleandoc(self.call.__doc__ or "")

    @property
    def summary(self) -> str:
        return " ".join(self.help.split("\n\n")[0].split())

    @property
    def usage(self) -> str:
        args = [a.metavar if a.required else f"[{a.metavar}]" for a in self.params if isinstance(a, Argument)]
        return " ".join(["%(prog)s [OPTIONS]", *args])


class UsageError(Exception):
    """A command line the parser refused; ``parser`` is the (sub)command's."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class ParserExit(Exception):
    """``--help``, ``--version`` or ``--print-completion`` has printed; exit with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting, and takes no
    abbreviations (``--lim`` is not ``--limit``)."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog, formatter_class=HelpFormatter, allow_abbrev=False, add_help=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise ParserExit(status)


class HelpFormatter(argparse.HelpFormatter):
    """Help that reads like the ``edge`` command's: paragraphs re-wrapped to the terminal
    (at most 100 columns), examples printed as written, commands listed under ``Commands:``
    one per line, options' help aligned in one column."""

    def __init__(self, prog: str) -> None:
        import shutil  # here: only help is formatted

        width = min(shutil.get_terminal_size().columns, 100) - 2
        super().__init__(prog, max_help_position=34, width=max(width, 40))

    def add_usage(self, usage: str | None, actions: Iterable[argparse.Action],
                  groups: Iterable[Any], prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("Examples:"):  # each example whole, so it can be copied
            return "\n".join(indent + line for line in text.splitlines())
        import textwrap

        return "\n\n".join(textwrap.fill(" ".join(p.split()), width, initial_indent=indent, subsequent_indent=indent,
                                         break_on_hyphens=False) for p in text.split("\n\n"))

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)  # never --password-|file

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):  # the commands, without a COMMAND line
            return "".join(self._format_action(a) for a in action._get_subactions())
        return super()._format_action(action)


def add_param(group: argparse._ActionsContainer, p: Param) -> None:
    """One parameter spec → an argparse argument (``dest`` is the parameter's name)."""
    text = p.help.replace("%", "%%")
    if isinstance(p, Argument):
        group.add_argument(p.name, metavar=p.metavar, type=p.type, help=text, nargs=None if p.required else "?")
        return
    flags = sorted(p.flags, key=len)  # -q, --quiet
    if p.type is bool:
        action = argparse.BooleanOptionalAction if p.negatable else "store_true"
        group.add_argument(*flags, dest=p.name, action=action, default=None if p.negatable else bool(p.default),
                           help=text)
        return
    if p.default is not None:
        text += f" (default: {p.default:g})" if isinstance(p.default, float) else f" (default: {p.default})"
    if p.required:
        text += " (required)"
    group.add_argument(*flags, dest=p.name, type=p.type, metavar=metavar(p), help=text, required=p.required,
                       default=p.default, action="append" if p.repeat else "store")


def add_command(commands: argparse._SubParsersAction, command: Command, prog: str,
                examples: Sequence[str] = ()) -> None:
    """``command`` as a subparser of ``commands``: arguments, options, examples at the end."""
    epilog = "Examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    sub = commands.add_parser(command.name, help=command.summary, description=command.help,
                              usage=command.usage, epilog=epilog, prog=f"{prog} {command.name}")
    arguments = sub.add_argument_group("Arguments")
    options = sub.add_argument_group("Options")
    for p in command.params:
        add_param(arguments if isinstance(p, Argument) else options, p)
    options.add_argument("-h", "--help", action="help", help="Show this message and exit.")
    sub.set_defaults(_command=command)


def build_parser(prog: str, description: str, commands: Sequence[Command], *, version: str,
                 root: Sequence[Option] = (), examples: Mapping[str, Sequence[str]] | None = None) -> Parser:
    """The top-level parser: ``root``'s options, ``--version``, ``--print-completion``, then
    ``commands`` (one is required), each with its ``examples`` at the end of its help. The
    chosen :class:`Command` arrives as ``_command``, every parameter under its name."""
    parser = Parser(prog=prog, description=description, usage="%(prog)s [OPTIONS] COMMAND [ARGS]...")
    options = parser.add_argument_group("Options")
    for o in root:
        add_param(options, o)
    options.add_argument("--version", action="version", version=f"%(prog)s {version}",
                         help=f"Print the {prog} version and exit.")
    options.add_argument("--print-completion", action=_PrintCompletion, choices=["bash"], metavar="bash",
                         default=argparse.SUPPRESS,
                         help="Print a bash completion script and exit (to save or source).")
    options.add_argument("-h", "--help", action="help", help="Show this message and exit.")
    subs = parser.add_subparsers(title="Commands", metavar="COMMAND", dest="_name", parser_class=Parser,
                                 required=True)
    for c in commands:
        add_command(subs, c, prog, (examples or {}).get(c.name, ()))
    return parser


class _PrintCompletion(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        sys.stdout.write(completion_script(parser))
        parser.exit()


def command_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The subparser of command ``name``, else ``parser`` itself."""
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = subs.choices.get(name, parser) if name else parser
    return found


def suggest(parser: argparse.ArgumentParser, message: str) -> str:
    """``unrecognized arguments: --lmit`` → with "did you mean --limit?" where ``parser``
    knows a close one."""
    import difflib

    if not message.startswith("unrecognized arguments"):
        return message
    known = [s for a in parser._actions for s in a.option_strings]
    near = [difflib.get_close_matches(w, known, n=1) for w in message.split(": ", 1)[-1].split()]
    close = [m[0] for m in near if m]
    return f"{message} (did you mean {' or '.join(close)}?)" if close else message


def completion_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion script for ``parser``: its commands, each command's options, and
    file names where a value or an argument goes."""
    prog = parser.prog
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    top = [*subs.choices, *(s for a in parser._actions for s in a.option_strings)]
    cases = "".join(f"        {name}) words=\"{' '.join(s for a in sub._actions for s in a.option_strings)}\" ;;\n"
                    for name, sub in subs.choices.items())
    fn = "_" + prog.replace("-", "_")
    return f"""# bash completion for {prog} (generated by `{prog} --print-completion bash`)
{fn}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} cmd="" words="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ ${{COMP_WORDS[i]}} == -* ]] || {{ cmd=${{COMP_WORDS[i]}}; break; }}
    done
    case $cmd in
        "") words="{' '.join(top)}" ;;
{cases}    esac
    if [[ -z $cmd || $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}}
complete -o default -F {fn} {prog}
"""
