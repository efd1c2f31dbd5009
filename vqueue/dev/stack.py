"""Start and stop the local stack (API + one worker): `python -m vqueue.dev.stack run|up|down`.

A supervisor process (vqueue/dev/stack_supervisor.py) runs the parts and restarts any that dies,
with backoff. `up` starts it in the background (pid files and logs in VQUEUE_RUN_DIR) and
returns once the API answers and the worker has its engine loaded; `down` stops it and its
parts. Both may be run twice. `run` does the same in the foreground, sends the seed questions,
and serves until Ctrl-C. `hold NAME` stops one part until `release NAME` (the benchmark frees
the machine for the bare engine that way).
"""

import argparse
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from db.engine import make_sync_engine
from db.keys import active_key_by_hash, create_key, hash_key
from vqueue.client.api_client import VQueueClient
from vqueue.dev.demo import run_demo
from vqueue.dev.stack_supervisor import STOP_GRACE_S, StackSupervisor, hold_file, stop_group
from vqueue.settings import Settings, get_settings

COMMANDS = {"api": [sys.executable, "-m", "api"], "worker": [sys.executable, "-m", "worker"]}
SUPERVISOR = "stack"

# Supervisors this interpreter started, kept so that they are reaped when stopped (no zombies).
_started: dict[int, "subprocess.Popen[bytes]"] = {}


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


def _log_tail(settings: Settings, name: str, lines: int = 30) -> str:
    try:
        text = (settings.run_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _start_supervisor(settings: Settings, parts: list[str]) -> int:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.run_dir / f"{SUPERVISOR}.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vqueue.dev.stack", "supervise", *parts],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Outlives this command, and Ctrl-C in its terminal.
            start_new_session=True,
        )
    _pid_file(settings, SUPERVISOR).write_text(f"{process.pid}\n")
    _started[process.pid] = process
    return process.pid


def _worker_listed(settings: Settings) -> bool:
    """/ready lists the worker running now (an old worker's heartbeat may linger)."""
    pid = running_pid(settings, "worker")
    if pid is None:
        return False
    try:
        workers = httpx.get(base_url(settings) + "/ready", timeout=5).json().get("workers", [])
    except (httpx.HTTPError, ValueError):
        return False
    return any(worker["name"].endswith(f":{pid}") for worker in workers)


def _api_answers(settings: Settings) -> bool:
    try:
        return httpx.get(base_url(settings) + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(settings: Settings, parts: list[str]) -> None:
    """Until every part answers. A part that dies meanwhile is restarted by the supervisor;
    its log is shown, and the others keep running whatever happens here."""
    ready = {"api": _api_answers, "worker": _worker_listed}
    deadline = time.monotonic() + settings.start_timeout_s
    seen = {name: running_pid(settings, name) for name in parts}
    while time.monotonic() < deadline:
        if running_pid(settings, SUPERVISOR) is None:
            raise StackError(f"the supervisor exited:\n{_log_tail(settings, SUPERVISOR)}")
        for name in parts:
            pid = running_pid(settings, name)
            if seen[name] is not None and pid != seen[name]:
                print(
                    f"{name} exited during start-up; the supervisor restarts it:\n"
                    f"{_log_tail(settings, name)}",
                    file=sys.stderr,
                )
            seen[name] = pid
        if all(ready[name](settings) for name in parts):
            return
        time.sleep(1.0)
    raise StackError(
        f"not ready after {settings.start_timeout_s:.0f}s; the supervisor keeps "
        f"trying (`make down` stops it); see {settings.run_dir}/"
    )


def up(settings: Settings, parts: list[str] | None = None) -> None:
    parts = parts or list(COMMANDS)
    pid = running_pid(settings, SUPERVISOR)
    if pid is None:
        pid = _start_supervisor(settings, parts)
        print(f"started the stack's supervisor (pid {pid}); logs in {settings.run_dir}/")
    else:
        print(f"the stack is already running (supervisor pid {pid})")
    wait_ready(settings, parts)
    print(f"ready: {base_url(settings)}")


def start_api(settings: Settings) -> int:
    """Only the API (benchmarks of the API alone); returns its pid once it answers."""
    up(settings, ["api"])
    pid = running_pid(settings, "api")
    assert pid is not None
    return pid


def kill(settings: Settings, name: str, sig: int = signal.SIGKILL, *, group: bool = False) -> int:
    """Signal a part's main process, or its whole process group (a fault, for tests and
    drills); the supervisor restarts what dies."""
    pid = running_pid(settings, name)
    if pid is None:
        raise StackError(f"{name} is not running")
    if group:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)
    return pid


def wait_exit(pid: int, timeout: float) -> bool:
    """True once `pid` has exited."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def hold(settings: Settings, name: str) -> None:
    """Stop one part until `release` (the supervisor does not restart it meanwhile)."""
    hold_file(settings.run_dir, name).touch()
    timeout_s = STOP_GRACE_S + 30  # the supervisor's own stop, and its next look
    deadline = time.monotonic() + timeout_s
    while running_pid(settings, name) is not None:
        if time.monotonic() > deadline:
            raise StackError(f"{name} still runs {timeout_s:.0f}s after it was held")
        time.sleep(0.2)


def release(settings: Settings, name: str) -> None:
    hold_file(settings.run_dir, name).unlink(missing_ok=True)


def down(settings: Settings) -> None:
    pid = running_pid(settings, SUPERVISOR)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if not wait_exit(pid, STOP_GRACE_S * len(COMMANDS) + 30):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if (started := _started.pop(pid, None)) is not None:
            started.wait()
        print(f"stopped the stack (supervisor pid {pid})")
    # Parts left by a supervisor that was killed: stop them one by one.
    for name in reversed(COMMANDS):
        part = running_pid(settings, name)
        if part is not None:
            stop_group(part, functools.partial(wait_exit, part))
            print(f"stopped {name} (pid {part})")
    _pid_file(settings, SUPERVISOR).unlink(missing_ok=True)
    for name in COMMANDS:
        _pid_file(settings, name).unlink(missing_ok=True)
        hold_file(settings.run_dir, name).unlink(missing_ok=True)


def supervise(settings: Settings, parts: list[str]) -> None:
    """The supervisor process: runs until SIGTERM or SIGINT, then stops its parts."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    supervisor = StackSupervisor(settings, {name: COMMANDS[name] for name in parts})
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: supervisor.request_stop())
    supervisor.run()
    supervisor.stop()


def run(settings: Settings) -> None:
    if running_pid(settings, SUPERVISOR) is not None:
        print("the stack is already running in the background (make up); using it")
        _demo(settings)
        return
    print(f"starting the API and a worker; logs in {settings.run_dir}/ (Ctrl-C stops)")
    supervisor = StackSupervisor(settings, COMMANDS)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    _pid_file(settings, SUPERVISOR).write_text(f"{os.getpid()}\n")
    thread = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
    thread.start()
    try:
        wait_ready(settings, list(COMMANDS))
        _demo(settings)
        print(f"\nserving on {base_url(settings)}; Ctrl-C to stop")
        while thread.is_alive():
            thread.join(1.0)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        supervisor.stop()
        _pid_file(settings, SUPERVISOR).unlink(missing_ok=True)


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
    parser = argparse.ArgumentParser(prog="python -m vqueue.dev.stack")
    parser.add_argument("command", choices=["run", "up", "down", "supervise", "hold", "release"])
    parser.add_argument("parts", nargs="*", help=f"of {', '.join(COMMANDS)} (default: all)")
    args = parser.parse_args()
    if unknown := set(args.parts) - set(COMMANDS):
        parser.error(f"no part named {', '.join(sorted(unknown))}")
    settings = get_settings()
    parts = args.parts or list(COMMANDS)
    try:
        if args.command == "supervise":
            supervise(settings, parts)
        elif args.command in ("hold", "release"):
            for name in parts:
                (hold if args.command == "hold" else release)(settings, name)
        elif args.command == "up":
            up(settings, parts)
        else:
            {"run": run, "down": down}[args.command](settings)
    except StackError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
