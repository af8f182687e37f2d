"""A wheelhouse for running the whole project on a machine that reaches no package index (a lent
GPU machine with PyTorch): the wheels of what ``kedro run`` needs, at the versions installed
here, in ``wheelhouse/`` (gitignored), carried along with the working tree.

    .venv/bin/python benchmarks/wheelhouse.py --python-version 3.12   # here, with network access
    bash benchmarks/gpu.sh ...       # there: its "kedro run --env smoke" step installs them

The dependency closure of the project's requirements (minus torch and torchvision, which the
machine has, and kedro-viz, which a run does not use) is read from this environment.
Pure-Python distributions are downloaded as wheels (``pip download --no-deps``, pinned) into
``pure.txt``'s wheels; small compiled ones (pydantic-core, PyYAML, ...) as wheels for the
machine's Python and platform (``small.txt``). The large compiled ones (numpy, pandas, pyarrow,
scipy, scikit-learn, matplotlib, ...; hundreds of MB) cannot be carried: ``large.txt`` lists
them, the machine must have them, and gpu.sh names any it lacks instead of running the study.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROVIDED = {"torch", "torchvision", "triton"}  # on the GPU machine already, with their CUDA libraries
NOT_FOR_RUNS = {"kedro-viz"}  # the browser app; `kedro run` does not import it
SMALL_MB = 8  # compiled distributions up to this installed size are carried


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively (extras and markers honoured),
    leaving out what the GPU machine provides."""
    found: dict[str, tuple[metadata.Distribution, set[str]]] = {}
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = _name(requirement.name)
        if name in PROVIDED or name.startswith("nvidia-"):
            continue
        distribution = metadata.distribution(requirement.name)
        extras = set(requirement.extras)
        if name in found and extras <= found[name][1]:
            continue
        found.setdefault(name, (distribution, set()))[1].update(extras)
        for text in distribution.requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras or {""}):
                pending.append(needed)
    return {name: distribution for name, (distribution, _) in found.items()}


def is_pure(distribution: metadata.Distribution) -> bool:
    return "Root-Is-Purelib: true" in (distribution.read_text("WHEEL") or "")


def installed_mb(distribution: metadata.Distribution) -> float:
    return sum(f.size or 0 for f in distribution.files or []) / 2**20


def download(requirements: Path, out: Path, *target: str) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(out)]
    subprocess.run([*command, *target, "--requirement", str(requirements)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="the machine's Python, for the compiled wheels (python3 --version there)")
    parser.add_argument("--platform", nargs="+", default=["manylinux_2_28_x86_64", "manylinux2014_x86_64"])
    parser.add_argument("--list-only", action="store_true", help="write the lists, download nothing")
    args = parser.parse_args()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = [r for r in project["dependencies"] if _name(Requirement(r).name) not in NOT_FOR_RUNS]
    distributions = closure(needed)
    lists: dict[str, list[str]] = {"pure": [], "small": [], "large": []}
    for name, distribution in sorted(distributions.items()):
        kind = "pure" if is_pure(distribution) else "small" if installed_mb(distribution) <= SMALL_MB else "large"
        lists[kind].append(f"{distribution.metadata['Name']}=={distribution.version}")
    args.out.mkdir(parents=True, exist_ok=True)
    for kind, pins in lists.items():
        (args.out / f"{kind}.txt").write_text("\n".join(pins) + "\n")
    print(", ".join(f"{len(pins)} {kind}" for kind, pins in lists.items()), "(large: the machine must have them)", flush=True)
    if not args.list_only:
        download(args.out / "pure.txt", args.out)
        platforms = [option for platform in args.platform for option in ("--platform", platform)]
        download(args.out / "small.txt", args.out, "--python-version", args.python_version, *platforms)
        size = sum(p.stat().st_size for p in args.out.glob("*.whl"))
        print(f"{args.out}: {size / 2**20:.1f} MiB of wheels")


if __name__ == "__main__":
    main()
