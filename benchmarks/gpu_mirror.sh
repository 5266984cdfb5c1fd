#!/usr/bin/env bash
# A CPU mirror of the lent GPU machine, and the GPU check's dry CPU mode run in it, before GPU time is spent:
#
#   image       Python 3.12 with the lent machine's packages at its versions (benchmarks/gpu_wheelhouse.py image):
#               torch 2.11.0 exactly as PyPI ships it for Linux (a CUDA 13 build, which runs on the CPU; PyPI has
#               no CPU-only 2.11.0 wheel and its own CPU index is out of reach here), transformers 5.17.0, ...
#               Kept in $GPU_MIRROR_DIR (default .cache/gpu-mirror/image), rebuilt when the list changes.
#   wheelhouse  what the check needs beyond that image, for CPython 3.12 manylinux x86_64: .wheelhouse/
#   check       `bash benchmarks/gpu_check.sh` in dry CPU mode with that image's Python, in a network namespace
#               of its own (no network at all) where unshare works: it installs the wheelhouse with --no-index
#               and the project from the working tree, and runs every check that needs no CUDA
#
# Usage, from anywhere: bash benchmarks/gpu_mirror.sh    (exit 0 only when every check that can run here passed)
# The first run downloads about 2.5 GB (torch and its CUDA libraries) and takes several minutes; later runs
# reuse the image and the wheelhouse. The dry report is written to benchmarks/results/cpu-mirror-<date>.json.
set -euo pipefail

cd "$(dirname "$0")/.."
MIRROR=${GPU_MIRROR_DIR:-.cache/gpu-mirror}
IMAGE=$MIRROR/image
start=$(date +%s)

py312=""
for candidate in ${GPU_MIRROR_PYTHON:-} python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
    # a pyenv shim answers to the name but may not run: ask the interpreter itself
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2> /dev/null; then
        py312=$candidate
        break
    fi
done
if [ -z "$py312" ]; then
    echo "gpu_mirror: no Python 3.12 found (the lent machine's); set GPU_MIRROR_PYTHON" >&2
    exit 2
fi

# --- image ----------------------------------------------------------------------------------------------------
requirements=$("$py312" benchmarks/gpu_wheelhouse.py image)
stamp=$(printf '%s\n%s\n' "$("$py312" -V)" "$requirements" | sha256sum | cut -c1-16)
if [ "$(cat "$IMAGE/.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "== image: building the lent machine's stand-in in $IMAGE ($("$py312" -V))"
    rm -rf "$IMAGE"
    mkdir -p "$MIRROR"
    "$py312" -m venv "$IMAGE"
    printf '%s\n' "$requirements" > "$MIRROR/image-requirements.txt"
    "$IMAGE/bin/python" -m pip install --quiet --only-binary=:all: -r "$MIRROR/image-requirements.txt" \
        2> >(grep -v 'is ignored: it is neither' >&2)
    echo "$stamp" > "$IMAGE/.stamp"
else
    echo "== image: $IMAGE is up to date"
fi
"$py312" benchmarks/gpu_wheelhouse.py check-image --image-python "$IMAGE/bin/python"
"$IMAGE/bin/python" -c "import torch; print('   torch', torch.__version__, 'CUDA build', torch.version.cuda, \
'(CUDA available here:', torch.cuda.is_available(), ')')"

# --- wheelhouse -----------------------------------------------------------------------------------------------
echo "== wheelhouse"
"$py312" benchmarks/gpu_wheelhouse.py build --image-python "$IMAGE/bin/python" --out .wheelhouse \
    2> >(grep -v 'is ignored: it is neither' >&2)

# --- check ----------------------------------------------------------------------------------------------------
report=benchmarks/results/cpu-mirror-$(date +%F).json
echo "== check (dry CPU mode, no registry: the wheelhouse and the working tree only)"
check=(env PYTHON="$IMAGE/bin/python" GPU_CHECK_DRY=1 GPU_CHECK_REPORT="$report" bash benchmarks/gpu_check.sh)
rc=0
if unshare --net true 2>/dev/null; then
    # a network namespace of its own: no interface but loopback, so nothing can be fetched from anywhere
    echo "   (in a network namespace of its own: no network)"
    unshare --net bash -c 'ip link set lo up 2>/dev/null; exec "$@"' _ "${check[@]}" || rc=$?
else
    echo "   (unshare is not permitted here: the check runs with the network, installing with --no-index)"
    "${check[@]}" || rc=$?
fi
echo "gpu_mirror: $(( $(date +%s) - start )) s in all; report $report; exit $rc"
exit $rc
