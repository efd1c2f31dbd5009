"""Start and stop the local stack (API + one worker): `python -m vqueue.stack run|up|down`.

`up` starts both in the background (pid files and logs in VQUEUE_RUN_DIR) and returns once the
API answers and the worker has its engine loaded; `down` stops them. Both may be run twice.
`run` does the same in the foreground, sends the seed questions, and serves until Ctrl-C.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from db.engine import make_sync_engine
from db.keys import active_key_by_hash, create_key, hash_key
from vqueue.client import VQueueClient
from vqueue.demo import run_demo
from vqueue.settings import Settings, get_settings

COMMANDS = {"api": [sys.executable, "-m", "api"], "worker": [sys.executable, "-m", "worker"]}
STOP_GRACE_S = 60.0

# Processes this interpreter started, kept so that they are reaped when stopped (no zombies).
_children: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    pass


def base_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive. The state follows the command name,
    # which is in parentheses and may itself hold spaces and parentheses.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def running_pid(settings: Settings, name: str) -> int | None:
    try:
        pid = int(_pid_file(settings, name).read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _reap() -> None:
    """Forget children that exited (killed, say) without being waited for."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def _spawn(settings: Settings, name: str) -> int:
    _reap()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.run_dir / f"{name}.log", "ab") as log:
        process = subprocess.Popen(
            COMMANDS[name],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: Ctrl-C reaches only us, and we stop it in order.
            start_new_session=True,
        )
    _pid_file(settings, name).write_text(f"{process.pid}\n")
    _children[process.pid] = process
    return process.pid


def _log_tail(settings: Settings, name: str, lines: int = 30) -> str:
    try:
        text = (settings.run_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(settings: Settings, pids: dict[str, int]) -> None:
    """Until /ready lists the worker started here (an old worker's heartbeat may linger)."""
    deadline = time.monotonic() + settings.start_timeout_s
    url = base_url(settings) + "/ready"
    while time.monotonic() < deadline:
        for name, pid in pids.items():
            if not _alive(pid):
                raise StackError(f"{name} exited during start-up:\n{_log_tail(settings, name)}")
        try:
            workers = httpx.get(url, timeout=5).json().get("workers", [])
            if any(worker["name"].endswith(f":{pids['worker']}") for worker in workers):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1.0)
    raise StackError(f"not ready after {settings.start_timeout_s:.0f}s; see {settings.run_dir}/")


def up(settings: Settings) -> None:
    pids = {}
    for name in COMMANDS:
        pid = running_pid(settings, name)
        if pid is None:
            pid = _spawn(settings, name)
            print(f"started {name} (pid {pid}), log: {settings.run_dir / (name + '.log')}")
        else:
            print(f"{name} already running (pid {pid})")
        pids[name] = pid
    try:
        wait_ready(settings, pids)
    except StackError:
        down(settings)
        raise
    print(f"ready: {base_url(settings)}")


def start_api(settings: Settings) -> int:
    """Only the API (benchmarks of the API alone); returns its pid once it answers."""
    pid = running_pid(settings, "api") or _spawn(settings, "api")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise StackError(f"api exited during start-up:\n{_log_tail(settings, 'api')}")
        try:
            if httpx.get(base_url(settings) + "/health", timeout=5).status_code == 200:
                return pid
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise StackError(f"the API did not answer in 60s; see {settings.run_dir}/")


def _stop(pid: int) -> None:
    # The main process first, so the worker shuts its engine down cleanly; then the whole group.
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()


def kill(settings: Settings, name: str, sig: int = signal.SIGKILL) -> int:
    """Signal a process of the stack (a fault, for tests and drills); SIGKILL hits its group."""
    pid = running_pid(settings, name)
    if pid is None:
        raise StackError(f"{name} is not running")
    if sig == signal.SIGKILL:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)
    return pid


def wait_exit(pid: int, timeout: float) -> bool:
    """True once `pid` has exited (and is reaped, if we started it)."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()
    return True


def down(settings: Settings) -> None:
    _reap()
    for name in reversed(COMMANDS):
        pid = running_pid(settings, name)
        if pid is not None:
            _stop(pid)
            print(f"stopped {name} (pid {pid})")
        _pid_file(settings, name).unlink(missing_ok=True)


def run(settings: Settings) -> None:
    if all(running_pid(settings, name) for name in COMMANDS):
        print("the stack is already running in the background (make up); using it")
        _demo(settings)
        return
    pids = {name: _spawn(settings, name) for name in COMMANDS}
    print(f"starting the API and a worker; logs in {settings.run_dir}/ (Ctrl-C stops)")
    try:
        wait_ready(settings, pids)
        _demo(settings)
        print(f"\nserving on {base_url(settings)}; Ctrl-C to stop")
        while all(_alive(pid) for pid in pids.values()):
            time.sleep(1.0)
        raise StackError("a process exited; see the logs in " + str(settings.run_dir))
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        for pid in pids.values():
            _stop(pid)
        for name in COMMANDS:
            _pid_file(settings, name).unlink(missing_ok=True)


def local_key(settings: Settings) -> str | None:
    """The admin key `make run` uses and prints: kept in the run directory while it stays
    valid, made anew otherwise. None when keys are off."""
    if not settings.auth:
        return None
    path = settings.run_dir / "api-key"
    engine = make_sync_engine(settings.database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            if path.exists():
                secret = path.read_text().strip()
                if conn.execute(active_key_by_hash(hash_key(secret))).first() is not None:
                    return secret
            _, secret = create_key(conn, "local (make run)", admin=True)
    finally:
        engine.dispose()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def _demo(settings: Settings) -> None:
    key = local_key(settings)
    if key is not None:
        print(f"API key (admin, also in {settings.run_dir / 'api-key'}): {key}")
        print(f"  export VQUEUE_API_KEY={key}")
    with VQueueClient(base_url(settings), api_key=key) as client:
        run_demo(client, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m vqueue.stack")
    parser.add_argument("command", choices=["run", "up", "down"])
    command = parser.parse_args().command
    settings = get_settings()
    try:
        {"run": run, "up": up, "down": down}[command](settings)
    except StackError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
