"""The Dockerfile, linted without a Docker engine: what it copies exists and is not ignored,
the wheel it installs carries every page asset, it runs `homecare`, and it agrees with the
manifests on user and port."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import tomllib

from tests.deploy.conftest import REPO, of_kind, rendered

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def ignored(path: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p)
               for p in patterns if not p.startswith("!"))


def test_dockerfile_copies_files_that_exist_and_are_not_ignored():
    """Every COPY source from the build context exists in the repository and survives
    .dockerignore; the image is built from a slim Python 3.11 in two stages."""
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2 and all(f.startswith("python:3.11-slim") for f in froms)
    copies = [shlex.split(args) for word, args in steps if word == "COPY"]
    context_copies = [c for c in copies if not c[0].startswith("--from")]
    assert context_copies
    for copy in context_copies:
        for source in copy[:-1]:
            assert (REPO / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"
    # what the image needs to install the distribution is all in the context
    sources = {s for c in context_copies for s in c[:-1]}
    assert {"pyproject.toml", "README.md", "contracts", "services"} <= sources
    for heavy in (".venv", "var", ".git", "tests"):
        assert ignored(heavy)


def test_image_runs_homecare_as_the_manifests_user_on_their_port():
    """ENTRYPOINT is the `homecare` console script the package defines; the image's user and
    exposed port are the ones the Deployments run as and probe."""
    steps = dict(instructions())  # last one wins, as in Docker
    assert json.loads(steps["ENTRYPOINT"]) == ["homecare"]  # exec form: signals reach it
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["homecare"] == "services.cli:main"
    uid = int(steps["USER"].split(":")[0])
    port = int(steps["EXPOSE"])
    for overlay in ("dev", "production"):
        for deployment in of_kind(rendered(overlay), "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsUser"] == uid
            assert pod["containers"][0]["ports"][0]["containerPort"] == port
    cmd = json.loads(steps["CMD"])
    assert cmd[0] == "up" and cmd[cmd.index("--port") + 1] == str(port)


def test_the_installed_distribution_carries_every_non_python_file():
    """`pip install .` in the image only ships files that package-data names: every page
    asset, schema and rule file tracked under services/ and contracts/ must match it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["*"]
    tracked = subprocess.run(["git", "ls-files", "services", "contracts"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    data = [p for p in tracked if not p.endswith((".py", ".md"))]
    assert data, "expected page assets and schemas"
    missing = [p for p in data
               if not any(fnmatch.fnmatch(p.rsplit("/", 1)[-1], pat) for pat in patterns)]
    assert missing == []
