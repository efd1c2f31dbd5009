"""Sampling profiles of the stack's processes during a measured run (`--profile DIR`).

py-spy samples the worker and the API (with its worker processes) from outside, so the
processes run unchanged; raw output is one line per distinct stack ("thread;frame;... count"),
which `python -m benchmarks.profile FILE` sums per thread and per function. It needs py-spy
on PATH and the right to trace the processes (root, or ptrace allowed).
"""

import argparse
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from vqueue.dev import stack
from vqueue.settings import Settings

RATE_HZ = 200


class Profiler:
    """py-spy on each of the stack's processes, for `seconds` from `start()`."""

    def __init__(self, settings: Settings, out: Path, seconds: int) -> None:
        self.settings = settings
        self.out = out
        self.seconds = seconds
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, label: str) -> None:
        spy = shutil.which("py-spy")
        if spy is None:
            print("py-spy is not on PATH: no profile", flush=True)
            return
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("worker", "api"):
            pid = stack.running_pid(self.settings, name)
            if pid is None:
                continue
            command = [spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ)]
            command += ["--duration", str(self.seconds), "--format", "raw", "--threads"]
            command += ["--nonblocking", "--subprocesses", "--output"]
            command.append(str(self.out / f"{label}-{name}.txt"))
            log = (self.out / f"{label}-{name}.log").open("wb")
            self._running.append(subprocess.Popen(command, stdout=log, stderr=log))

    def wait(self) -> None:
        for process in self._running:
            try:
                process.wait(timeout=self.seconds + 60)
            except subprocess.TimeoutExpired:
                process.kill()
        self._running.clear()


def _function(frame: str) -> str:
    """A frame "name (file.py:12)" becomes "name (file.py)": samples add up per function."""
    name, _, place = frame.rpartition(" (")
    return f"{name} ({place.rpartition(':')[0]})" if name and ":" in place else frame


def summarize(path: Path, top: int = 25) -> str:
    """Samples per thread, then the functions each busy thread spends them in (self and total)."""
    threads: Counter[str] = Counter()
    own: dict[str, Counter[str]] = {}
    total: dict[str, Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        frames = stack_text.split(";")
        # "process PID:"command"" (with --subprocesses), then "thread (TID): name".
        head = 2 if frames[0].startswith("process ") and len(frames) > 1 else 1
        thread, count = ";".join(frames[:head]), int(count_text)
        threads[thread] += count
        functions = [_function(frame) for frame in frames[head:]]
        if functions:
            own.setdefault(thread, Counter())[functions[-1]] += count
            for function in set(functions):
                total.setdefault(thread, Counter())[function] += count
    lines = [f"{path.name}: {sum(threads.values())} samples"]
    for thread, samples in threads.most_common(8):
        lines.append(f"\n## {thread}: {samples} samples")
        lines.append("self:")
        lines += [f"  {n:6d}  {frame}" for frame, n in own.get(thread, Counter()).most_common(top)]
        lines.append("total:")
        lines += [
            f"  {n:6d}  {frame}" for frame, n in total.get(thread, Counter()).most_common(top)
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    arguments = parser.parse_args()
    for file in arguments.files:
        print(summarize(file, arguments.top))
