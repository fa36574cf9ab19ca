"""Loopback ports for the servers we start (Triton, TorchServe)."""
from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(["port"], host)["port"]


def free_ports(names, host: str = "127.0.0.1") -> dict[str, int]:
    """One distinct free port per name (all sockets held open while choosing, so none repeats)."""
    sockets = []
    try:
        for _ in names:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return {name: s.getsockname()[1] for name, s in zip(names, sockets)}
    finally:
        for s in sockets:
            s.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
