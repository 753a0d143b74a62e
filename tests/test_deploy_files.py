"""The Dockerfile, .dockerignore and docker-compose.yml say what the README promises.

No Docker daemon runs in CI, so the image is not built here (`docker build .` where one
does); these checks catch a COPY of a file that moved and a lost health check or user."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_the_dockerfile_builds_from_files_that_exist_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert len(re.findall(r"^FROM python:3\.11-slim", text, re.M)) == 2, "multi-stage"
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    assert re.search(r"^USER routerbot$", text, re.M)
    assert "bubblewrap" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert re.search(r"^EXPOSE 3000$", text, re.M)
    assert text.rstrip().endswith('CMD ["routerbot", "serve"]')


def test_the_build_context_is_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split("\n")
    assert "*" in ignored, "everything is left out unless listed"
    kept = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    assert kept == {"pyproject.toml", "README.md", "bot", "adapters"}


def test_compose_keeps_data_on_a_volume_and_restarts() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    service = compose["services"]["routerbot"]
    assert service["env_file"] == ".env"
    assert service["restart"] == "unless-stopped"
    assert "routerbot-data:/data" in service["volumes"]
    assert "routerbot-data" in compose["volumes"]
