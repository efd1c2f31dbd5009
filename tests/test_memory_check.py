"""The worker's check of free memory before it builds a CPU engine (no engine needed)."""

from pathlib import Path

import psutil
import pytest

from worker.memory_check import (
    ENGINE_PROCESS_OVERHEAD,
    GIB,
    NotEnoughMemory,
    check_cpu_memory,
    cpu_engine_need,
)


def model_folder(tmp_path: Path, weights: int) -> Path:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * weights)
    (tmp_path / "tokenizer.json").write_text("{}")  # not weights
    return tmp_path


def test_the_need_is_the_kv_cache_the_weights_and_the_engine_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    need = cpu_engine_need(model_folder(tmp_path, 4096), memory_utilization=0.5)
    assert (need.kv_cache, need.weights) == (3 * GIB, 4096)
    assert need.total == 3 * GIB + 4096 + ENGINE_PROCESS_OVERHEAD


def test_without_an_explicit_kv_cache_vllms_share_of_the_machine_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    need = cpu_engine_need(model_folder(tmp_path, 4096), memory_utilization=0.5)
    assert need.total == int(psutil.virtual_memory().total * 0.5)


def test_a_machine_without_the_memory_is_refused_with_the_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    too_much = int(psutil.virtual_memory().total / GIB) + 8
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", str(too_much))
    with pytest.raises(NotEnoughMemory) as refused:
        check_cpu_memory(model_folder(tmp_path, 4096), memory_utilization=0.5)
    message = str(refused.value)
    assert f"KV cache {too_much:.1f}" in message
    assert "GiB available" in message
    assert "VLLM_CPU_KVCACHE_SPACE" in message


def test_a_machine_with_the_memory_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    check_cpu_memory(model_folder(tmp_path, 4096), memory_utilization=0.5)
