"""docker-compose.yml and the Dockerfile, checked without a Docker engine (none runs on the build machines):
the compose file against the Compose Specification's JSON schema, and both for what a user relies on."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_spec_schema():
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(_compose(), schema)


def test_compose_wires_the_gateway_to_jaeger_otlp_and_publishes_on_loopback_only():
    services = _compose()["services"]
    gateway, jaeger = services["gateway"], services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one")
    assert gateway["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert "127.0.0.1:8787:8787" in gateway["ports"]
    assert "127.0.0.1:16686:16686" in jaeger["ports"]
    assert all(str(p).startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    assert services["demo"]["profiles"] == ["demo"] and services["demo"]["command"] == ["demo"]


def test_dockerfile_runs_as_non_root_and_leaves_no_pip_cache():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any("--no-cache-dir" in line for line in lines if "pip install" in line)
    assert "EXPOSE 8787" in lines
    copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
    for source in copied:  # everything the image copies exists in the repository
        assert (ROOT / source).exists(), source
