"""What both CLIs (``edge`` and ``edge-agent``) share: one ``error: ...`` line for every
failure a person can fix, and output locations checked before long work begins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from device_agent.errors import EdgeError

EXIT_USAGE = 2


def one_line(message: str) -> str:
    """Library messages (tarfile, parsers) can span lines; the CLIs promise one."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def describe_os_error(e: OSError) -> str:
    """``PATH: reason`` for a failed file operation, the reason alone for a socket."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.filename is None:
        return reason
    if getattr(e, "filename2", None) is not None:
        return f"{e.filename} -> {e.filename2}: {reason}"
    return f"{e.filename}: {reason}"


def set_verbose(value: bool) -> None:
    """``-v``: every log line, including the runtimes' and TensorFlow's (``EDGE_VERBOSE``)."""
    if value:
        from device_agent.quiet import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


def error_exit(e: EdgeError | OSError) -> int:
    """The exit for a failure a person can fix: ``error: MESSAGE`` on stderr and code 2; a
    closed pipe (`edge ... | head`: the reader left) ends quietly, code 0."""
    if isinstance(e, BrokenPipeError):
        return 0
    message = str(e) if isinstance(e, EdgeError) else describe_os_error(e)
    print(f"error: {one_line(message)}", file=sys.stderr)
    return EXIT_USAGE


def check_output_file(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Refuse, before any work, an output file that could not be written later.

    The folders above it may be missing (they are created at write time); the nearest
    existing one must accept a new file. Nothing is left behind by the check.
    """
    p = Path(path)
    if p.is_dir():
        raise EdgeError(f"{p}: is a directory; expected a file name for the {what}")
    _check_dir(p.parent, p, what)
    return p


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Refuse, before any work, a folder that could not be created or written into."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise EdgeError(f"{p}: exists and is not a directory; expected a folder for the {what}")
    _check_dir(p, p, what)
    return p


def _check_dir(folder: Path, target: Path, what: str) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise EdgeError(f"{target}: cannot write the {what} here: {existing} is not a directory")
    import tempfile  # here: `edge-agent run` checks no output folder (cold start)

    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".edge-write-check-")
    except OSError as e:
        raise EdgeError(f"{target}: cannot write the {what} there: {existing} does not accept "
                        f"new files ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
