"""A Redis server of the suite's own, so that a test can restart it as the world does.

It runs as docker-compose.yml runs Redis (nothing kept on disk), dies with the process that
started it (parent-death signal), and listens on a port below the kernel's ephemeral range:
while it is down, no outgoing connection can be handed its port, so it comes back where the
stack expects it.
"""

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.engine_guard import set_parent_death_signal


def available() -> bool:
    return shutil.which("redis-server") is not None


def _die_with_parent() -> None:
    set_parent_death_signal(signal.SIGKILL)


def _port_below_ephemeral_range() -> int:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 8000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _port_below_ephemeral_range()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                # The suite opens many clients at once (load and fault tests).
                "--maxclients", "10000",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        with Redis(port=self.port, socket_connect_timeout=1) as probe:
            while True:
                try:
                    probe.ping()
                    return
                except RedisConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start; see {self.workdir / 'redis.log'}"
                        ) from None
                    time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop the server (SIGTERM: the shutdown a restart begins with; SIGKILL: a crash)."""
        if self.process is None:
            return
        self.process.send_signal(sig)
        self.process.wait(timeout)
        self.process = None
