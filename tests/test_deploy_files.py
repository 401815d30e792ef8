"""Static checks of the Dockerfile and compose file (no Docker engine on the build machines)."""

from __future__ import annotations

import json

import yaml

from app.commands.serve import GRACEFUL_SHUTDOWN_S
from app.training.supervisor import SHUTDOWN_GRACE_S
from tests.conftest import REPO


def test_dockerfile_essentials() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    instructions = [line.split()[0] for line in lines if line and not line.startswith("#")]
    assert lines[0].startswith("#") or instructions[0] == "FROM"
    assert any(line.startswith("FROM nvidia/cuda:") and "runtime" in line for line in lines)
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert any("python -m app models fetch" in line for line in lines)  # sha256-checked fetch
    last_run = max(i for i, word in enumerate(instructions) if word == "RUN")
    assert instructions.index("USER") > last_run  # the service never runs as root
    assert '"serve"' in lines[-1]
    # Dependencies install before the code is copied in, so code changes reuse that layer.
    copy_app = lines.index("COPY app ./app")
    assert any("pip install . &&" in line for line in lines[:copy_app])
    assert any("pip install --no-deps ." in line for line in lines[copy_app:])
    # The service may write its data and fine-tuned checkpoints, not the weights' sha256 pins.
    chown = next(line for line in lines if "chown" in line)
    assert chown.split()[-2:] == ["/data", "/app/models/finetuned"]


def test_compose_reserves_a_gpu_and_persists_data() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = compose["services"]["face"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    mounts = {volume.split(":")[1] for volume in service["volumes"]}
    # Data and fine-tuned checkpoints persist; the image's weights and pins do not, so a
    # rebuilt image is never shadowed by an old volume.
    assert mounts == {"/data", "/app/models/finetuned"}
    assert "FACE_API_KEYS" in service["environment"]


def test_compose_waits_for_the_graceful_shutdown_before_killing() -> None:
    """Docker kills 10 s after SIGTERM unless told otherwise, cutting off running requests
    that the service would still finish."""
    service = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["face"]
    grace = service["stop_grace_period"]
    assert grace.endswith("s")
    # The drain, then a training job's stop, then saving the index (seconds at 1M faces).
    assert int(grace[:-1]) >= GRACEFUL_SHUTDOWN_S + SHUTDOWN_GRACE_S + 15


def test_weights_are_added_before_the_code_with_the_registry_pin() -> None:
    """A code change must not download the 110 MB weights again; ADD --checksum holds them
    to the same sha256 as models/registry.json."""
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("# syntax=docker/dockerfile:1\n")  # ADD --checksum needs BuildKit's
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    add = next(line for line in lines if line.startswith("ADD "))
    spec = next(
        entry
        for entry in json.loads((REPO / "models" / "registry.json").read_text())
        if entry["name"] == "facenet-vggface2"
    )
    words = add.split()
    assert f"--checksum=sha256:{spec['sha256']}" in words
    assert "--chmod=644" in words  # ADD from a URL is 600 otherwise: unreadable to the service
    assert words[-2:] == [spec["source"], f"models/{spec['file']}"]
    assert lines.index(add) < lines.index("COPY app ./app")
