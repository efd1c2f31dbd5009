"""docker-compose.yml: valid against the Compose schema once interpolated, and wired as the
docs/deploy.md says (no Docker engine here, so `docker compose config` cannot run)."""

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "tests" / "data" / "compose-spec.schema.json").read_text())
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal $.
VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, enough for this file."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in {"?", ":?"} and unset:
            raise KeyError(f"{name}: {arg}")
        if op in {"-", ":-"} and unset:
            return arg
        return value or ""

    return VARIABLE.sub(replace, text)


def load(env: dict[str, str]) -> dict[str, Any]:
    text = (ROOT / "docker-compose.yml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(interpolate(text, env))
    return loaded


@pytest.fixture
def compose() -> dict[str, Any]:
    return load({"POSTGRES_PASSWORD": "example"})


def test_the_file_validates_against_the_compose_schema(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_an_invalid_file_would_be_caught(compose: dict[str, Any]) -> None:
    compose["services"]["api"]["restart"] = ["always"]
    compose["services"]["api"]["depends_on"] = {"migrate": {"condition": "whenever"}}
    assert len(list(jsonschema.Draft7Validator(SCHEMA).iter_errors(compose))) >= 2


def test_a_missing_password_stops_the_file_from_loading() -> None:
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        load({})


def test_services_are_wired_as_documented(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "worker-cpu"} <= set(services)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker", "worker-cpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    worker = services["worker"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert (device["driver"], device["capabilities"]) == ("nvidia", ["gpu"])
    assert "models:/models" in worker["volumes"]
    assert "models:/models" in services["worker-cpu"]["volumes"]
    assert worker["profiles"] == ["gpu"]
    assert services["worker-cpu"]["profiles"] == ["cpu"]
    # Gated models: the token is passed through from the environment, never written here.
    assert worker["environment"]["HF_TOKEN"] in ("", None)
    assert (
        load({"POSTGRES_PASSWORD": "x", "HF_TOKEN": "hf_abc"})["services"]["worker"]["environment"][
            "HF_TOKEN"
        ]
        == "hf_abc"
    )
    assert worker["environment"]["HF_HUB_ENABLE_HF_TRANSFER"] == "1"
    assert set(compose["volumes"]) == {"pgdata", "models"}


def test_every_long_running_service_restarts_and_checks_its_health(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "api", "worker", "worker-cpu"):
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"], name
    for name in ("worker", "worker-cpu"):
        assert services[name]["healthcheck"]["test"][-1] == "worker.healthcheck"
        assert services[name]["init"] is True  # no engine process outlives its worker
