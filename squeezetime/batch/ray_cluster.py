"""A real Ray cluster of several nodes on this machine, for tests and benchmarks of ``squeezetime batch --ray``.

    cluster = LocalRayCluster(nodes=2, cpus_per_node=1).start()
    ...  squeezetime batch corpus/ --out r.jsonl --demo --ray <cluster.address>   (environment: cluster.env)
    cluster.stop()

Each node is a ``ray start`` on 127.0.0.1 with its own ports, all in a private temp dir, with a private auth
token and no dashboard or usage stats. ``stop`` ends exactly this cluster's processes: ``ray stop`` would end
every Ray instance of the user on the machine.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import SqueezeTimeError


class LocalRayCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_bytes: int = 200_000_000):
        from ..serving.ports import free_ports

        self.nodes, self.cpus_per_node, self.object_store_bytes = nodes, cpus_per_node, object_store_bytes
        self.temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
        self.ports = free_ports(["gcs", "client", "dashboard"] + [f"agent{i}" for i in range(nodes)])
        self.address = f"127.0.0.1:{self.ports['gcs']}"
        token = Path(self.temp) / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(token)}

    def start(self) -> "LocalRayCluster":
        common = ["--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus_per_node}", f"--temp-dir={self.temp}",
                  f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats"]
        self._ray("start", "--head", f"--port={self.ports['gcs']}", "--include-dashboard=false",
                  f"--dashboard-port={self.ports['dashboard']}", f"--ray-client-server-port={self.ports['client']}",
                  f"--dashboard-agent-listen-port={self.ports['agent0']}", *common)
        for i in range(1, self.nodes):
            self._ray("start", f"--address={self.address}", f"--dashboard-agent-listen-port={self.ports[f'agent{i}']}",
                      *common)
        return self

    def connect_here(self) -> None:
        """Point this process's own ``ray.init(address=...)`` at the cluster (its auth token)."""
        for key in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
            os.environ[key] = self.env[key]

    def _ray(self, *args: str) -> None:
        ray = Path(sys.executable).with_name("ray")
        done = subprocess.run([str(ray), *args], env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SqueezeTimeError(f"ray {args[0]} failed:\n{done.stdout}{done.stderr}")

    def processes(self) -> list:
        """This cluster's live processes: those naming its temp dir or GCS port, and their children."""
        import psutil

        found = {}
        for p in psutil.process_iter(["cmdline"]):
            try:
                cmdline = " ".join(p.info["cmdline"] or [])
                if self.temp in cmdline or f":{self.ports['gcs']}" in cmdline:
                    for q in [p, *p.children(recursive=True)]:
                        found[q.pid] = q
            except psutil.Error:  # ended while we looked
                continue
        return [p for p in found.values() if _alive(p)]

    def stop(self, timeout: float = 10) -> list:
        """Terminate this cluster's processes (then kill those left); returns any still running."""
        import psutil

        processes = self.processes()
        for p in processes:
            _signal(p, "terminate")
        _, alive = psutil.wait_procs(processes, timeout=timeout)
        for p in alive:
            _signal(p, "kill")
        psutil.wait_procs(alive, timeout=timeout)
        left = self.processes()
        shutil.rmtree(self.temp, ignore_errors=True)
        return left


def _alive(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(process, how: str) -> None:
    import psutil

    try:
        getattr(process, how)()
    except psutil.Error:
        pass
