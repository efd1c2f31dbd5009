"""Parts of the benchmark that decide what its figures mean: the prompts each run gets, and
the CPU accounting (which part of the stack a process belongs to)."""

import subprocess
import sys

from vqueue.bench.cpu_use import BENCH, CpuUse, group_of
from vqueue.bench.workload import Prompts
from vqueue.settings import Settings
from worker.default_model import prepared_path


def test_each_run_gets_new_prompts_and_both_sides_the_same(settings: Settings) -> None:
    queue_side = Prompts(prepared_path(settings.model_cache_dir), 16)
    warm_up, measured = queue_side.take("warm-up 0", 8), queue_side.take("measured", 8)
    # Nothing the engine saw while warming up comes back (it would be served from its cache).
    assert len(set(warm_up + measured)) == 16
    # Asked again, for the other side or a smaller level: the same prompts, in order.
    assert queue_side.take("measured", 8) == measured
    assert queue_side.take("measured", 3) == measured[:3]
    assert queue_side.take("measured", 10)[:8] == measured
    assert not set(queue_side.take("single 0", 1)) & set(warm_up + measured)


BENCH_PID = 100
PROCESSES = {
    1: (0, "/sbin/init", 0),
    BENCH_PID: (1, "python -m vqueue.bench --label x", 0),
    101: (BENCH_PID, "python -m api", 0),
    102: (101, "python -c from multiprocessing.spawn import spawn_main", 0),
    103: (BENCH_PID, "[celeryd: celery@vm:MainProcess] -active- ()", 0),
    104: (103, "VLLM::EngineCore", 0),
    105: (BENCH_PID, "python -c from multiprocessing.spawn import spawn_main", 0),
    106: (1, "postgres: 15/main: postgres vqueue_bench 127.0.0.1(5000) idle", 0),
    107: (1, "/usr/bin/redis-server 127.0.0.1:6379", 0),
    108: (1, "python3 -m worker", 0),
    109: (1, "sshd: root", 0),
}


def test_each_process_counts_for_its_nearest_named_ancestor() -> None:
    groups = {pid: group_of(pid, PROCESSES, BENCH_PID) for pid in PROCESSES}
    assert groups == {
        1: "other",
        BENCH_PID: BENCH,
        101: "api",
        102: "api",  # a uvicorn worker process
        103: "worker",
        104: "engine core",  # not its worker's
        105: BENCH,  # a client process
        106: "postgres",
        107: "redis",
        108: "worker",  # one started beside the bench, as scripts/gpu-bench does
        109: "other",
    }


def test_a_busy_child_is_counted_in_the_host_and_its_group() -> None:
    use = CpuUse()
    spin = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)
    read = use.read()
    busy = read["busy_cores"]
    assert isinstance(busy, dict)
    seconds = read["seconds"]
    assert isinstance(seconds, float)
    # The child ended before the read: its time is its parent's (this process, the "bench").
    assert busy[BENCH] * seconds >= 0.5
    assert read["host_busy_cores"] * seconds >= 0.5
