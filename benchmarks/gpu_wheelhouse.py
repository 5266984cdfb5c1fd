"""The wheels the GPU check needs beyond the lent GPU machine's own packages, for CPython 3.12 manylinux x86_64.

The lent machine reaches no package registry: what its image lacks travels beside the working tree as carried
ignored paths (64 MiB in all). This script says what its image holds (`image`: the stand-in the CPU mirror
installs) and fills the wheelhouse (`build`): the project's own requirements (`rapid-agent[rl]`, which includes
`[hf]`) resolved against an environment that stands for the image, with every package there pinned to the version
it has, so only what is missing is fetched, never torch or a CUDA library. The build backend (setuptools, wheel)
comes too, although the image has both: pip builds the project in an isolated environment that sees only the
wheelhouse.

    python3 benchmarks/gpu_wheelhouse.py image                       # the image stand-in's requirements
    python3 benchmarks/gpu_wheelhouse.py build --image-python PY     # fill .wheelhouse/ (PY: the image stand-in)

`build` keeps exactly the resolved wheels in the folder (others are removed), writes `requirements.txt` (runtime
wheels, pinned) and `build-requirements.txt` beside them, prints the size and fails when it reaches the limit.
`bash benchmarks/gpu_mirror.sh` runs both and then the check; `bash benchmarks/gpu_check.sh` installs the
wheelhouse there with `--no-index`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 60
#: what pip may take for CPython 3.12 on the lent machine (glibc 2.28 or newer, x86_64)
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(39, 16, -1)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]

#: The image stand-in: packages with the versions read on the lent machine (shared/ENVIRONMENT.md, 2026-11), the
#: rest at the newest release that fits beside them, bounded where a newer one needs a package the image lacks
#: (typer 0.29 needs pydantic; python-dateutil 3 needs tzdata). Only what the check's requirements can reach
#: is listed: the image's JAX, ONNX or Lightning play no part.
IMAGE_REQUIREMENTS = [
    "torch==2.11.0",
    "torchvision==0.26.0",
    "triton==3.6.0",
    "transformers==5.17.0",
    "tokenizers==0.23.2",
    "safetensors==0.8.0",
    "huggingface-hub==1.33.0",
    "accelerate==1.15.0",
    "numpy==2.5.2",
    "sentencepiece==0.2.2",
    "tiktoken==0.14.0",
    "peft",
    "pyarrow",
    "pandas",
    "python-dateutil<3",
    "pillow",
    "pyyaml",
    "jinja2",
    "httpx",
    "aiohttp",
    "requests",
    "prometheus-client",
    "tqdm",
    "rich",
    "sympy",
    "networkx",
    "matplotlib",
    "tensorboard",
    "pytest",
    "pytest-timeout",
    "msgpack",
    "regex",
    "psutil",
    "filelock",
    "fsspec",
    "packaging",
    "typing-extensions",
    "click",
    "typer<0.29",
    "xxhash",
    "cloudpickle",
    "protobuf",
    "grpcio",
    "setuptools",
    "wheel",
]

#: every package the lent machine's image holds (read there 2026-11-17): the wheelhouse never carries one of them,
#: and the image stand-in may hold nothing else
IMAGE_PACKAGES = set(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
    cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax
    fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2
    joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
    markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
    mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
    nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver
    nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
    nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
    protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
    pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml
    regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
    sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate
    tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
    torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
    typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
    zipp""".split()
)
#: packages the image lacks that must never travel: vLLM's wheel is ~240 MB and pins another torch
NEVER_CARRIED = {"vllm"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements() -> tuple[list[str], list[str]]:
    """What `rapid-agent[rl]` asks for at run time (its `[hf]` part included), and the build backend's needs."""
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, extras = meta["project"], meta["project"]["optional-dependencies"]
    runtime = [*project["dependencies"], *extras["rl"], *extras["hf"]]
    runtime = [r for r in runtime if not canonical(r).startswith("rapid-agent")]
    return sorted(set(runtime)), list(meta["build-system"]["requires"])


def pip(python: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "pip", *args]
    print("$ " + " ".join(cmd[:12]) + (" ..." if len(cmd) > 12 else ""), flush=True)
    return subprocess.run(cmd, check=True, text=True)


def resolve(image_python: str, requirements: list[str]) -> list[tuple[str, str]]:
    """(name, version) of what `requirements` add to the image stand-in, its own packages pinned where they are."""
    frozen = subprocess.run(
        [image_python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    installed = {canonical(p["name"]): p["version"] for p in json.loads(frozen)}
    with tempfile.TemporaryDirectory() as tmp:
        pins = Path(tmp, "image-pins.txt")
        pins.write_text("".join(f"{n}=={v}\n" for n, v in sorted(installed.items()) if n != "pip"))
        report = Path(tmp, "report.json")
        # the report lists what would be installed; an image package that needed another version fails here
        pip(image_python, "install", "--dry-run", "--quiet", "--only-binary=:all:", "--report", str(report),
            "-c", str(pins), *requirements)  # fmt: skip
        found = json.loads(report.read_text())["install"]
    added = [(canonical(i["metadata"]["name"]), i["metadata"]["version"]) for i in found]
    clash = sorted(n for n, _ in added if n in IMAGE_PACKAGES or n in NEVER_CARRIED)
    if clash:
        raise SystemExit(
            f"the wheelhouse would carry {clash}, which the lent machine's image already holds (or which can never "
            "travel): add them to IMAGE_REQUIREMENTS so that the image stand-in has them, at the image's version"
        )
    return sorted(added)


def download(pinned: list[str], out: Path) -> None:
    """Wheels for CPython 3.12 manylinux x86_64 (or pure Python), no dependencies: the list is already closed."""
    platforms = [f"--platform={p}" for p in PLATFORMS]
    pip(sys.executable, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
        "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none", *platforms,
        "--dest", str(out), *pinned)  # fmt: skip


def wheel_name(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return canonical(name), version


def build(image_python: str, out: Path) -> int:
    runtime, backend = project_requirements()
    added = resolve(image_python, runtime)
    build_only = resolve_build(backend)
    wanted = {*added, *build_only}
    out.mkdir(parents=True, exist_ok=True)
    have = {wheel_name(p): p for p in out.glob("*.whl")}
    for key, path in have.items():
        if key not in wanted:
            path.unlink()  # a wheel left from an earlier resolution: two versions of one package stop the install
    missing = sorted(f"{n}=={v}" for n, v in wanted if (n, v) not in have)
    if missing:
        download(missing, out)
    have = {wheel_name(p): p for p in out.glob("*.whl")}
    absent = sorted(f"{n}=={v}" for n, v in wanted if (n, v) not in have)
    if absent:
        raise SystemExit(f"no cp312 manylinux x86_64 wheel was fetched for {absent}")
    (out / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in added))
    (out / "build-requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in build_only))
    size = sum(p.stat().st_size for p in out.glob("*.whl"))
    print(f"wheelhouse {out}: {len(have)} wheels ({len(added)} run-time, {len(build_only)} to build the project), "
          f"{size / 2**20:.1f} MiB (limit {LIMIT_MIB} MiB)")  # fmt: skip
    for (name, version), path in sorted(have.items()):
        print(f"  {name:<44}{version:<14}{path.stat().st_size / 2**20:7.2f} MiB")
    if size >= LIMIT_MIB * 2**20:
        print(f"the wheelhouse is over its {LIMIT_MIB} MiB limit", file=sys.stderr)
        return 1
    return 0


def resolve_build(backend: list[str]) -> list[tuple[str, str]]:
    """The build backend, newest release of each requirement that is pure Python (an isolated build sees nothing
    else)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp, "report.json")
        pip(sys.executable, "install", "--dry-run", "--quiet", "--ignore-installed", "--only-binary=:all:",
            "--report", str(report), *backend)  # fmt: skip
        found = json.loads(report.read_text())["install"]
    return sorted((canonical(i["metadata"]["name"]), i["metadata"]["version"]) for i in found)


def check_image(image_python: str) -> int:
    """Refuse an image stand-in that holds a package the lent machine's image lacks: the wheelhouse would leave it
    out, and the check would pass here and fail there."""
    listed = subprocess.run(
        [image_python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    extra = sorted(canonical(p["name"]) for p in json.loads(listed) if canonical(p["name"]) not in IMAGE_PACKAGES)
    if extra:
        print(f"the image stand-in holds {extra}, which the lent machine's image lacks: bound the requirement that "
              "brought them in IMAGE_REQUIREMENTS", file=sys.stderr)  # fmt: skip
        return 1
    print(f"   image stand-in: {len(json.loads(listed))} packages, all of them on the lent machine's image too")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("image", help="print the image stand-in's requirements, one a line")
    c = sub.add_parser("check-image", help="check that the image stand-in holds only the image's packages")
    c.add_argument("--image-python", required=True)
    b = sub.add_parser("build", help="fill the wheelhouse")
    b.add_argument("--image-python", required=True, help="a Python 3.12 whose environment stands for the image")
    b.add_argument("--out", type=Path, default=ROOT / ".wheelhouse", help="the wheelhouse folder")
    args = parser.parse_args()
    if args.command == "image":
        print("\n".join(IMAGE_REQUIREMENTS))
        return 0
    if args.command == "check-image":
        return check_image(args.image_python)
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return build(args.image_python, args.out)


if __name__ == "__main__":
    sys.exit(main())
