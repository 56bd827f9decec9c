"""docker-compose.yml: no Docker engine here, so the file is checked statically."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_images_are_pinned(compose):
    images = {name: svc["image"] for name, svc in compose["services"].items() if "image" in svc}
    assert {"kafka", "timescaledb", "grafana"} <= set(images)
    for name, image in images.items():
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert re.fullmatch(r"[0-9][\w.\-]*", tag), f"{name}: image {image!r} is not pinned to a version"


def test_services_use_the_local_stack_variables(compose):
    env = compose["x-roadsense-env"]
    fields = {f"ROADSENSE_{n.upper()}" for n in Settings.model_fields}
    extra = {"ROADSENSE_GRAFANA_PASSWORD"}  # read by `roadsense db migrate`, not a worker setting
    assert set(env) - extra <= fields, set(env) - extra - fields
    # the three the pipeline cannot run without
    assert {"ROADSENSE_KAFKA_BOOTSTRAP", "ROADSENSE_PG_DSN", "ROADSENSE_PSEUDONYM_KEY"} <= set(env)
    for svc in ("worker", "migrate", "simulator"):
        assert compose["services"][svc]["environment"] == env


def test_kafka_is_kraft_and_db_is_timescale(compose):
    k = compose["services"]["kafka"]["environment"]
    assert k["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "timescale/timescaledb" in compose["services"]["timescaledb"]["image"]


def test_dockerfile_ships_the_migrations_and_packages():
    text = (REPO / "Dockerfile").read_text()
    for part in ("agents", "pipeline", "roadnet", "schemas", "simulator", "sql"):
        assert f"COPY {part} {part}" in text


def test_dockerfile_compiles_the_kernels_into_the_image():
    # the build step is a Python one-liner; run it here as the image's build would
    import re
    import subprocess
    import sys

    text = (REPO / "Dockerfile").read_text()
    m = re.search(r'^RUN python -c "([^"]+)"$', text, re.M)
    assert m and "compile_kernels" in m.group(1)
    assert text.index("pip install") < m.start()  # after the packages are installed
    out = subprocess.run([sys.executable, "-c", m.group(1)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_grafana_provisioning_parses():
    for p in (REPO / "deploy" / "grafana" / "provisioning").rglob("*.yml"):
        doc = yaml.safe_load(p.read_text())
        assert doc["apiVersion"] == 1
