"""Sockets the fleet side opens for itself: a free TCP port to start a server on."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1", port: int = 0) -> int:
    """``port`` if it can be listened on at ``host``, or any free one for 0 (``OSError`` if not)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return int(s.getsockname()[1])
