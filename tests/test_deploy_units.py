"""deploy/systemd: units a GPU host can install, which restart what dies and stop a worker
with every process it started (its engine holds the GPU)."""

import configparser
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


@pytest.mark.parametrize(
    ("name", "module"), [("vqueue-worker@.service", "worker"), ("vqueue-api.service", "api")]
)
def test_a_unit_restarts_its_process_and_stops_its_whole_group(name: str, module: str) -> None:
    service = unit(name)["Service"]
    assert service["ExecStart"].endswith(f"python -m {module}")
    assert service["Restart"] == "always"
    assert service["KillMode"] == "control-group"
    assert float(service["RestartSec"]) > 0


def test_a_worker_unit_is_bound_to_its_gpu() -> None:
    service = unit("vqueue-worker@.service")["Service"]
    assert service["Environment"] == "CUDA_VISIBLE_DEVICES=%i"
    # Long enough for the first start's download and compilation.
    assert int(service["TimeoutStartSec"]) >= 600
