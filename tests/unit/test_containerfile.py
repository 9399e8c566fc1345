"""deploy/Containerfile builds the image the manifests run, from the project's own files.

No base image can be pulled here, so the file is parsed: what it copies exists, it installs the
package with the pins scripts/setup.sh uses, it runs `platform` as a non-root user, and its
version label, the image name the manifests use and the project version agree.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from lorafleet.platform import deploy_render as dr
from lorafleet.platform import topology as t

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.strip() if current else line.rstrip()
        if current.endswith("\\"):
            current = current[:-1].rstrip() + " "
            continue
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def setup_sh(name: str) -> str:
    return re.search(rf'^{name}="([^"]+)"', (ROOT / "scripts" / "setup.sh").read_text(), re.MULTILINE)[1]


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(CONTAINERFILE.read_text())


def copies(steps) -> list[tuple[list[str], str]]:
    out = []
    for word, args in steps:
        if word in {"COPY", "ADD"}:
            assert word == "COPY", "ADD fetches and unpacks; the image copies the project's files only"
            *sources, dest = shlex.split(args)
            assert not any(s.startswith("--from") for s in sources)
            out.append((sources, dest))
    return out


def workdir(steps) -> str:
    return [args for word, args in steps if word == "WORKDIR"][-1]


def test_the_parser_joins_continuations_and_drops_comments() -> None:
    assert instructions("# c\nFROM a\nRUN x \\\n && y\n\nENTRYPOINT [\"p\"]\n") == [
        ("FROM", "a"), ("RUN", "x && y"), ("ENTRYPOINT", '["p"]')]


def test_base_image_is_the_python_the_project_requires(steps) -> None:
    assert steps[0] == ("FROM", "python:3.11-slim-bookworm")
    assert PROJECT["requires-python"].startswith(">=3.11,<3.12")


def test_every_copy_source_exists_in_the_repository(steps) -> None:
    found = copies(steps)
    assert found
    for sources, _ in found:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    copied = {s.rstrip("/") for sources, _ in found for s in sources}
    # what building the package needs: its metadata, the readme it names, the package itself
    assert {"pyproject.toml", PROJECT["readme"], "lorafleet"} <= copied


def test_the_trainers_config_is_in_the_image(steps) -> None:
    config = t.KUBERNETES.train_config
    for sources, dest in copies(steps):
        target = Path(workdir(steps)) / dest if not dest.startswith("/") else Path(dest)
        for source in sources:
            if source.endswith("/") and config.startswith(f"{target}/"):
                assert (ROOT / source / Path(config).relative_to(target)).is_file()
                return
    pytest.fail(f"{config} (the RayJob's training config) is copied by no COPY")


def test_it_installs_the_cpu_extra_with_setup_shs_pins(steps) -> None:
    runs = " ".join(args for word, args in steps if word == "RUN")
    torch = setup_sh("TORCH_PIN")  # torch==X: the CPU build, installed first
    assert f'"{torch}+cpu"' in runs and runs.index(f"{torch}+cpu") < runs.index('".[cpu]"')
    assert "cpu" in PROJECT["optional-dependencies"]
    assert f'pip install --no-deps "{setup_sh("SMOLLM_PIN")}"' in runs
    assert f"pip uninstall -y {setup_sh('CUDA_ONLY')}" in runs
    assert "pip install --no-deps --force-reinstall ." in runs  # the real package over the dependency layer


def test_entrypoint_is_the_platform_console_script_as_a_non_root_user(steps) -> None:
    entry = [args for word, args in steps if word == "ENTRYPOINT"]
    assert len(entry) == 1 and json.loads(entry[0]) == ["platform"]
    assert "platform" in PROJECT["scripts"]
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert int(users[-1].split(":")[0]) == dr.APP_UID  # the manifests' runAsUser
    index = [w for w, _ in steps].index
    assert index("USER") < index("ENTRYPOINT")


def test_version_label_image_name_and_project_version_agree(steps) -> None:
    labels = " ".join(args for word, args in steps if word == "LABEL")
    assert re.search(r'org\.opencontainers\.image\.version="([^"]+)"', labels)[1] == PROJECT["version"]
    assert t.VERSION == PROJECT["version"] and t.IMAGE.endswith(f":{PROJECT['version']}")
    images = set()
    for path in (ROOT / "deploy" / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            images |= set(re.findall(r"\bimage: (\S+)", yaml.safe_dump(doc))) if doc else set()
    assert images == {t.IMAGE, dr.REDIS_IMAGE}


def test_make_image_builds_this_file_under_the_topologys_name() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), "image"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"podman build -f deploy/Containerfile -t {t.IMAGE} ."
