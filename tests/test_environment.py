"""environment.yml installs the tested stack: conda-forge only, and torch/torchvision at the
versions of constraints.txt (pinned there and installed by pip under those constraints)."""
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Channels that must not appear: PyTorch's own channel stopped at 2.5.1 (deprecated in
# October 2024) and the NVIDIA channel came with it; `defaults`/`anaconda` are Anaconda's
# repositories (their terms differ from conda-forge's). `nodefaults` is allowed: it keeps a
# user's configured default channels out.
DEPRECATED_CHANNELS = {"pytorch", "pytorch-nightly", "pytorch-test", "nvidia", "defaults", "anaconda"}
ALLOWED_CHANNELS = {"conda-forge", "nodefaults"}
TORCH_NAMES = {"torch", "pytorch", "torchvision", "pytorch-cuda", "pytorch-gpu", "cudatoolkit"}


def _name(spec: str) -> str:
    """The package name of a conda or pip spec (``numpy>=2``, ``pytorch=2.5=cuda*``)."""
    return re.split(r"[\s=<>!~\[;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def constraints() -> dict[str, str]:
    out = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def split(env: dict) -> tuple[list[str], list[str]]:
    """(conda specs, pip lines) of the environment."""
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += [str(x) for x in dep.get("pip", [])]
        else:
            conda.append(str(dep))
    return conda, pip


def check(env: dict, pins: dict[str, str], torch_deps: list[str]) -> list[str]:
    """Every way ``env`` could fail to install the tested stack, as messages (empty: fine).

    ``torch_deps``: the torch packages ``pip install -e .`` pulls in (pyproject)."""
    problems = []
    channels = [str(c) for c in env.get("channels", [])]
    for c in channels:
        if c in DEPRECATED_CHANNELS:
            problems.append(f"channel {c!r} is deprecated or not allowed")
        elif c not in ALLOWED_CHANNELS:
            problems.append(f"channel {c!r} is not conda-forge")
    if "conda-forge" not in channels:
        problems.append("conda-forge is not a channel")
    conda, pip = split(env)
    for spec in conda:
        if "::" in spec:
            problems.append(f"{spec!r} names a channel of its own")
            continue
        name = _name(spec)
        m = re.match(r"^[\w.-]+\s*==?\s*([\w.+]+)", spec.strip())
        if name in TORCH_NAMES:
            want = pins.get("torch" if name == "pytorch" else name)
            if not m or want is None or m.group(1) != want:
                problems.append(f"conda installs {spec!r}; constraints.txt pins "
                                f"{'torch' if name == 'pytorch' else name}=={want}")
        elif m and name in pins and m.group(1) != pins[name]:
            problems.append(f"conda pins {spec!r}; constraints.txt pins {name}=={pins[name]}")
    conda_torch = {_name(s) for s in conda} & TORCH_NAMES
    constrained = any(re.fullmatch(r"-c\s+constraints\.txt", p.strip()) for p in pip)
    for line in pip:
        if line.startswith("-"):
            continue
        name = _name(line)
        if name in pins and not constrained and f"=={pins[name]}" not in line:
            problems.append(f"pip installs {line!r} without the constraints.txt pin {name}=={pins[name]}")
    installs_project = any(re.fullmatch(r"-e\s+\.(\[[\w,]+\])?", p.strip()) for p in pip)
    for pkg in ("torch", "torchvision"):
        if pkg not in pins:
            problems.append(f"constraints.txt does not pin {pkg}")
        by_pip = installs_project and pkg in torch_deps and constrained
        by_conda = (pkg in conda_torch) or (pkg == "torch" and "pytorch" in conda_torch)
        if not (by_pip or by_conda):
            problems.append(f"{pkg} is not installed at the constraints.txt version "
                            f"(needs `-c constraints.txt` and `-e .` in the pip section, or a conda pin)")
    return problems


def project_torch_deps() -> list[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [_name(d) for d in meta["project"]["dependencies"]]


def test_environment_installs_the_tested_stack():
    assert check(environment(), constraints(), project_torch_deps()) == []


def test_pins_agree_with_the_installed_versions():
    """constraints.txt is what the tests run on: its torch pins are the installed ones."""
    import torch
    import torchvision

    pins = constraints()
    assert torch.__version__.split("+")[0] == pins["torch"]
    assert torchvision.__version__.split("+")[0] == pins["torchvision"]


def test_environment_python_is_the_tested_python():
    """constraints.txt was resolved on the venv's Python; the conda env must use the same."""
    py = next(s for s in split(environment())[0] if _name(s) == "python")
    assert py.split("=", 1)[1].lstrip("=") == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_pip_extras_match_the_makefile():
    extras = next(p for p in split(environment())[1] if p.startswith("-e"))
    make = (REPO / "Makefile").read_text()
    assert re.search(r'-c constraints\.txt -e "?' + re.escape(extras.split()[1]), make)


@pytest.mark.parametrize("mutation,expected", [
    (lambda e: e["channels"].insert(0, "pytorch"), "channel 'pytorch' is deprecated"),
    (lambda e: e["channels"].append("nvidia"), "channel 'nvidia' is deprecated"),
    (lambda e: e["channels"].append("defaults"), "channel 'defaults'"),
    (lambda e: e["channels"].remove("conda-forge"), "conda-forge is not a channel"),
    (lambda e: e["dependencies"].insert(0, "pytorch>=2.1"), "conda installs 'pytorch>=2.1'"),
    (lambda e: e["dependencies"].insert(0, "pytorch=2.5.1"), "constraints.txt pins torch==2.14.1"),
    (lambda e: e["dependencies"].insert(0, "pytorch::pytorch"), "names a channel"),
    (lambda e: e["dependencies"].insert(0, "torchvision==0.20.1"), "torchvision==0.29.1"),
    (lambda e: e["dependencies"][-1]["pip"].remove("-c constraints.txt"), "torch is not installed"),
])
def test_the_check_catches_a_bad_environment(mutation, expected):
    """The checker is not vacuous: each old or wrong recipe is named."""
    env = environment()
    mutation(env)
    problems = check(env, constraints(), project_torch_deps())
    assert any(expected in p for p in problems), problems


def test_the_old_recipe_fails():
    old = {"channels": ["pytorch", "nvidia", "conda-forge"],
           "dependencies": ["python=3.11", "pytorch>=2.1", "torchvision>=0.16", "pytorch-cuda",
                            "pip", {"pip": ["mnist1d", "-e .[book,test]"]}]}
    problems = check(old, constraints(), project_torch_deps())
    assert len(problems) >= 5
