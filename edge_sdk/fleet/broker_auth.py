"""Mosquitto's password file and ACL for a fleet (``edge fleet add-device`` / ``add-user``).

A device's user name is ``FLEET/ID``: the ACL's ``%u`` patterns then expand to exactly
``edge/v1/FLEET/ID/...``, so one fixed set of lines confines every device to its own fleet
and id (Mosquitto substitutes ``%u`` as text and refuses any user name with ``+`` or
``#``; ids never contain ``/``). Role users (collector, deployer) get ``user`` blocks.

The rendering and the hash are pure; :func:`add_user` reads and rewrites the two files,
each atomically (a temporary file renamed over the old one, mode and owner kept), so a
broker that reloads mid-way reads either the old file or the new one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from device_agent.errors import EdgeError
from device_agent.protocol import topics

# Patterns apply to every user. For a role user (no "/" in the name) they expand to
# 4-level topics such as edge/v1/collector/state, which are no device's topics.
DEVICE_PATTERNS = """\
# Devices: user name FLEET/ID. Each writes only its own topics and reads only its own
# deployments (and, for `edge bench` on the device, its own benchmark requests).
pattern write edge/v1/%u/state
pattern write edge/v1/%u/telemetry
pattern write edge/v1/%u/results
pattern write edge/v1/%u/deploy/status
pattern read edge/v1/%u/deploy
pattern read edge/v1/%u/bench
pattern write edge/v1/%u/bench/result
"""
HEADER = """\
# Mosquitto ACL for an edge-sdk fleet (acl_file). Written by `edge fleet add-device` and
# `edge fleet add-user`, which keep the user blocks below and rewrite the rest.

"""


class Role(str, Enum):
    """What a non-device user may do, within one fleet or (``+``) all of them."""

    COLLECTOR = "collector"  # reads the fleet, raises alerts, Home Assistant discovery
    DEPLOYER = "deployer"  # sends deployments, reads their progress


def role_rules(role: Role, fleet: str = "+") -> list[str]:
    """The ACL ``topic`` lines of a role user."""
    if fleet != "+":
        topics.check_id(fleet, "fleet")
    base = f"{topics.PREFIX}/{fleet}"
    ha = f"edge/ha/{fleet}/#"  # the values Home Assistant's configs point at
    if role is Role.COLLECTOR:
        return [f"topic read {base}/#", f"topic write {base}/alerts", "topic write homeassistant/#",
                f"topic write {ha}"]
    # `edge fleet retire` is an operator's act: it clears a device's retained birth and
    # its Home Assistant topics, so the deploying host may write those too. `edge optimize
    # --latency-on` sends benchmark requests and reads the answers (and the device's state,
    # to name an offline device at once) with the same credentials as `edge deploy`.
    return [f"topic write {base}/+/deploy", f"topic read {base}/+/deploy/status",
            f"topic write {base}/+/state", "topic write homeassistant/#", f"topic write {ha}",
            f"topic write {base}/+/bench", f"topic read {base}/+/bench/result", f"topic read {base}/+/state"]


def device_user(fleet: str, device: str) -> str:
    """A device's broker user name: ``FLEET/ID``."""
    return f"{topics.check_id(fleet, 'fleet')}/{topics.check_id(device)}"


def check_role_user(name: str) -> str:
    """A role user's name, refused with a ``/`` (those are device names) or outside the id alphabet."""
    if "/" in name or not name:
        raise EdgeError(f"user name: expected a role user name without '/', found {name!r}")
    return topics.check_id(name, "user name")


# ---- the ACL file -----------------------------------------------------------------------
def parse_user_blocks(text: str) -> dict[str, list[str]]:
    """``user`` name → its ``topic`` lines, from an ACL file (comments and patterns dropped)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("user "):
            current = blocks.setdefault(line[5:].strip(), [])
        elif line.startswith("topic ") and current is not None:
            current.append(line)
    return blocks


def render_acl(blocks: dict[str, list[str]]) -> str:
    """The whole ACL: header, device patterns, then each user block (sorted by name)."""
    parts = [HEADER, DEVICE_PATTERNS]
    for name in sorted(blocks):
        parts.append(f"\nuser {name}\n" + "".join(f"{rule}\n" for rule in blocks[name]))
    return "".join(parts)


# ---- the password file ------------------------------------------------------------------
PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the count travels in the hash


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Mosquitto 2's ``$7$`` format: PBKDF2-HMAC-SHA512, ``$7$ITER$SALT$HASH`` (base64).

    Written here rather than by ``mosquitto_passwd -b``, which would show the password
    in the process list; the broker reads either (the production test checks it does).
    """
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def parse_passwd(text: str) -> dict[str, str]:
    """user → hash, in file order."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            user, sep, hashed = line.partition(":")
            if sep:
                out[user] = hashed
    return out


def render_passwd(entries: dict[str, str]) -> str:
    """The password file's text: one ``user:hash`` line per entry, in the order given."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in entries.items())


def new_password() -> str:
    """24 URL-safe random characters (~143 bits)."""
    return secrets.token_urlsafe(18)


def check_password(password: str, where: str) -> str:
    """A password the file can hold: 1-1024 characters on one line, else an EdgeError naming ``where``."""
    if not password or "\n" in password or len(password) > 1024:
        raise EdgeError(f"{where}: expected a password of 1-1024 characters on one line")
    return password


# ---- the files ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerFiles:
    """Where the broker's password file and ACL live."""

    passwd: Path
    acl: Path


def add_user(files: BrokerFiles, user: str, password: str, rules: list[str] | None) -> None:
    """Add or replace ``user``: its hash in the password file and, for a role user
    (``rules`` given), its ACL block. The ACL is rewritten (with the device patterns)
    either way, so a new file is complete. The password file is written first: a user
    without ACL rules can do nothing, rules without a user admit nobody."""
    entries = parse_passwd(_read(files.passwd))
    entries[user] = hash_password(password)
    blocks = parse_user_blocks(_read(files.acl))
    if rules is not None:
        blocks[user] = rules
    _write_atomic(files.passwd, render_passwd(entries), mode=0o640, group=broker_group())
    _write_atomic(files.acl, render_acl(blocks), mode=0o644)


BROKER_GROUP = "mosquitto"  # Debian's and Raspberry Pi OS's


def broker_group() -> int | None:
    """The gid of the group Mosquitto runs as, when this system has it.

    Started as root, Mosquitto 2 switches to user ``mosquitto`` before it opens the
    password file ("Error: Unable to open pwfile" otherwise): a new file is made
    ``root:mosquitto`` 0640, readable by the broker and by nobody else."""
    try:
        import grp
    except ImportError:  # not on a POSIX system
        return None
    try:
        return grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeError(f"{path}: cannot read ({e})") from None


def _write_atomic(path: Path, text: str, *, mode: int, group: int | None = None) -> None:
    """Replace ``path`` in one rename; an existing file's mode and owner carry over
    (Mosquitto, running as its own user, must still read it after a reload), a new one
    gets ``mode`` and, when given and allowed, ``group``."""
    if not path.parent.is_dir():
        raise EdgeError(f"{path}: expected an existing directory {path.parent}")
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, st.st_mode & 0o7777 if st else mode)
        owner = (st.st_uid, st.st_gid) if st else (-1, -1 if group is None else group)
        if owner != (-1, -1):
            # Not root (nor in the group): the file stays ours, as the old one must have been.
            with contextlib.suppress(PermissionError):
                os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
