"""A Redis Cluster of three masters on free loopback ports, for the tests that need one.

Three ``redis-server --cluster-enabled yes`` processes joined with ``redis-cli --cluster
create``; the caller stops them by the PIDs started here (``stop_cluster``).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from suite.redis_server import EmbeddedRedis


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis needs port <= 55535."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20_000, 55_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def start_cluster(directory_for: Callable[[int], Path], masters: int = 3) -> list[EmbeddedRedis]:
    """``masters`` nodes (``directory_for(port)`` holds each one's files), slots spread
    over them, ``cluster_state:ok`` on every node. Skips the test without ``redis-cli``."""
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is needed to create a cluster")
    nodes: list[EmbeddedRedis] = []
    try:
        for _ in range(masters):
            port = cluster_port()
            directory = directory_for(port)
            node = EmbeddedRedis(
                directory,
                port=port,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(directory / "nodes.conf"),
                    "--cluster-node-timeout",
                    "5000",
                ],
            )
            nodes.append(node.start())
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    ["redis-cli", "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                for n in nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return nodes
            time.sleep(0.2)
        raise RuntimeError("the cluster did not become ready")
    except BaseException:
        stop_cluster(nodes)
        raise


def stop_cluster(nodes: list[EmbeddedRedis]) -> None:
    for node in nodes:
        node.stop()  # by the PID we started
