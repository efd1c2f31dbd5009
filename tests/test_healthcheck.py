"""`python -m worker.healthcheck`, as a container runs it: healthy while the beats are fresh."""

import os
import subprocess
import sys
import time
from pathlib import Path


def check(health_file: Path) -> int:
    env = {**os.environ, "VQUEUE_WORKER_HEALTH_FILE": str(health_file)}
    env["VQUEUE_WORKER_HEARTBEAT_S"] = "2"
    return subprocess.run([sys.executable, "-m", "worker.healthcheck"], env=env).returncode


def test_healthy_only_while_the_heartbeat_is_fresh(tmp_path: Path) -> None:
    beat = tmp_path / "alive"
    assert check(beat) == 1  # no beat yet: the engine is still loading
    beat.touch()
    assert check(beat) == 0
    stale = time.time() - 7  # more than three 2 s beats ago
    os.utime(beat, (stale, stale))
    assert check(beat) == 1
