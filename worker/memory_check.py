"""Refuse to build an engine the machine has no memory for, with a message that says so.

On the CPU build the engine's memory is the machine's: started with too little free, the engine
loads its weights, then either fails deep inside vLLM's KV-cache allocation or is killed by the
kernel's OOM killer, taking some other process with it. Checked first, the worker exits at once
(code 3) naming what it needs and what is free; its supervisor retries with backoff until the
memory is there. On a GPU, vLLM itself refuses when less than `gpu_memory_utilization` of the
card is free, with a message of its own.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

GIB = 1024**3
# Two fresh processes that import torch and vLLM (the engine core and its executor) hold this
# much beside the weights and the KV cache.
ENGINE_PROCESS_OVERHEAD = GIB
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


class NotEnoughMemory(RuntimeError):
    pass


@dataclass(frozen=True)
class MemoryNeed:
    kv_cache: int
    weights: int
    overhead: int = ENGINE_PROCESS_OVERHEAD

    @property
    def total(self) -> int:
        return self.kv_cache + self.weights + self.overhead

    def describe(self) -> str:
        return (
            f"{self.total / GIB:.1f} GiB (KV cache {self.kv_cache / GIB:.1f}, weights "
            f"{self.weights / GIB:.2f}, engine processes {self.overhead / GIB:.1f})"
        )


def weights_size(model_path: Path) -> int:
    """Bytes of the weight files of a local model folder (0 for a hub id not yet downloaded)."""
    if not model_path.is_dir():
        return 0
    return sum(
        path.stat().st_size
        for path in model_path.rglob("*")
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES
    )


def cpu_engine_need(model_path: Path, memory_utilization: float) -> MemoryNeed:
    """As vLLM's CPU backend sizes its KV cache: VLLM_CPU_KVCACHE_SPACE GiB where set, else
    `memory_utilization` of the machine's memory."""
    weights = weights_size(model_path)
    space = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "")
    if space.strip() and int(space) > 0:
        return MemoryNeed(kv_cache=int(space) * GIB, weights=weights)
    # vLLM then wants that share of the machine free for everything, the weights included.
    share = int(psutil.virtual_memory().total * memory_utilization)
    return MemoryNeed(kv_cache=max(share - weights - ENGINE_PROCESS_OVERHEAD, 0), weights=weights)


def check_cpu_memory(model_path: Path, memory_utilization: float) -> None:
    need = cpu_engine_need(model_path, memory_utilization)
    memory = psutil.virtual_memory()
    if memory.available < need.total:
        raise NotEnoughMemory(
            f"not enough free memory to start the engine: it needs about {need.describe()}, "
            f"and the machine has {memory.available / GIB:.1f} GiB available of "
            f"{memory.total / GIB:.1f} GiB. Free memory, or lower VLLM_CPU_KVCACHE_SPACE; the "
            "worker's supervisor tries again with backoff."
        )
    log.info(
        "memory for the engine: needs about %s, %.1f GiB available",
        need.describe(),
        memory.available / GIB,
    )
