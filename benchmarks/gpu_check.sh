#!/usr/bin/env bash
# The GPU check in one call on the lent GPU machine, as it is (one H200; Python 3.12 whose image holds torch 2.11.0,
# transformers 5.17.0, accelerate 1.15.0, ...; no package registry, no hub), within 8 minutes of wall time:
#
#   bash benchmarks/gpu_check.sh       # from the repository root, with .wheelhouse/ carried beside the tree
#
#   install   the wheelhouse (.wheelhouse/, filled by benchmarks/gpu_wheelhouse.py: trl, datasets, langgraph, ...)
#             into a fresh folder put on PYTHONPATH, with --no-index and from nothing else; then the project from
#             the working tree, built offline by the wheelhouse's own setuptools
#   checks    env, build, engines, masters, grpo, vpo, resume, vllm_engines, vllm_grpo (benchmarks/gpu_check.py
#             says what each measures and when it fails), each in its own process under its own time limit, so
#             one failure does not hide the rest; the vLLM ones are skipped where vllm does not import
#   report    one JSON report, benchmarks/results/gpu-<date>.json (copied into $OUT when that folder exists), and
#             a table. Exit 0 only when no check failed.
#
# GPU_CHECK_DRY=1 runs the dry CPU mode (what benchmarks/gpu_mirror.sh does); PYTHON picks the interpreter
# (default python3), GPU_CHECK_DIR the work folder (default a new one in /tmp), GPU_CHECK_BUDGET_S the budget,
# GPU_CHECK_REPORT the report's path, GPU_CHECK_ARGS extra options for every check (e.g. --reasoner tiny).
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
[[ "$PY" == */* ]] && PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")  # still found from the work folder
DRY=${GPU_CHECK_DRY:-0}
WORK=${GPU_CHECK_DIR:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
if [ "$DRY" = 1 ]; then
    MODE_ARGS=(--dry-cpu); SCALE=4; KIND=cpu-mirror   # 2 shared cores here, not 16 and a GPU
else
    MODE_ARGS=(); SCALE=1; KIND=gpu
fi
BUDGET=${GPU_CHECK_BUDGET_S:-$(( 450 * SCALE ))}
REPORT=${GPU_CHECK_REPORT:-benchmarks/results/$KIND-$(date +%F).json}
read -r -a EXTRA <<< "${GPU_CHECK_ARGS:-}"
START=$(date +%s)
DEADLINE=$(( START + BUDGET ))
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME="$WORK/hf" RAPID_AGENT_CACHE="$WORK/cache"
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

# record NAME JSON-FIELDS: one line of the results
record() { echo "{\"check\": \"$1\", $2}" >> "$RESULTS"; }
# text made safe for a JSON string: the last 600 characters, printable, without quotes or backslashes
quote() { tail -c 600 | tr '\n\r\t"\\' '     ' | tr -cd '[:print:]'; }

# --- install: the wheelhouse and the project, offline ----------------------------------------------------------
SITE="$WORK/site"
install_start=$(date +%s)
if ls .wheelhouse/*.whl > /dev/null 2>&1; then
    echo "== install (limit $(( 90 * SCALE ))s): .wheelhouse -> $SITE, no index"
    # nothing but the wheelhouse: no configured index, find-links or constraint reaches pip
    offline=(env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT -u PIP_REQUIREMENT
             PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1)
    pip_install=(timeout $(( 90 * SCALE )) "${offline[@]}" "$PY" -m pip install --no-index --no-deps --no-cache-dir
                 --find-links .wheelhouse --target "$SITE")
    if "${pip_install[@]}" -r .wheelhouse/requirements.txt > "$WORK/install.log" 2>&1 \
        && "${pip_install[@]}" . >> "$WORK/install.log" 2>&1; then
        wheels=$(grep -c . .wheelhouse/requirements.txt)
        mib=$(du -sm .wheelhouse | cut -f1)
        record install "\"ok\": true, \"wall_s\": $(( $(date +%s) - install_start )), \"wheels\": $wheels, \
\"wheelhouse_mib\": $mib, \"site\": \"$SITE\""
    else
        record install "\"ok\": false, \"wall_s\": $(( $(date +%s) - install_start )), \
\"problems\": [\"pip install from .wheelhouse failed: $(quote < "$WORK/install.log")\"]"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
elif "$PY" -c "import rapid_agent.rl" 2> /dev/null; then
    record install "\"ok\": null, \"skipped\": \"no .wheelhouse: the project and its requirements already import\""
else
    record install "\"ok\": false, \"problems\": [\"no .wheelhouse and the project does not import: fill it with \
benchmarks/gpu_wheelhouse.py (bash benchmarks/gpu_mirror.sh does) and carry it\"]"
fi

# --- the checks ------------------------------------------------------------------------------------------------
# run NAME LIMIT_S: one check under min(LIMIT_S x SCALE, time left); its log in $WORK/NAME.log
run() {
    local name=$1 limit=$(( $2 * SCALE ))
    local left=$(( DEADLINE - $(date +%s) ))
    (( left < limit )) && limit=$left
    if (( limit < 15 )); then
        record "$name" "\"ok\": false, \"problems\": [\"not run: no time left in the ${BUDGET}s budget\"]"
        return
    fi
    local start=$(date +%s)
    echo "== $name (limit ${limit}s)"
    # from the work folder: a `python -m rapid_agent...` child (the answer-check workers) started in the checkout
    # would import the source folder `rapid_agent/`, which lacks graphs/, tools/ and rl/, instead of the install
    (cd "$WORK" && timeout --kill-after=10 "$limit" "$PY" "$ROOT/benchmarks/gpu_check.py" "$name" --work "$WORK" \
        "${MODE_ARGS[@]}" "${EXTRA[@]}") > "$WORK/$name.log" 2>&1
    local rc=$? seconds=$(( $(date +%s) - start ))
    if grep -q '^RESULT ' "$WORK/$name.log"; then
        grep '^RESULT ' "$WORK/$name.log" | tail -1 | sed 's/^RESULT //' | "$PY" -c \
            "import json,sys; r=json.load(sys.stdin); r.update(wall_s=$seconds, limit_s=$limit); print(json.dumps(r))" \
            >> "$RESULTS"
    else
        local why="exit $rc"
        (( rc == 124 || rc == 137 )) && why="timed out after ${limit}s"
        record "$name" "\"ok\": false, \"wall_s\": $seconds, \"limit_s\": $limit, \
\"problems\": [\"$why: $(quote < "$WORK/$name.log")\"]"
    fi
}

run env 45
run build 60
run engines 90
run masters 45
run grpo 75
run vpo 90
run resume 120
run vllm_engines 120
run vllm_grpo 120

wall=$(( $(date +%s) - START ))
"$PY" benchmarks/gpu_check.py report --work "$WORK" --out "$REPORT" --wall-s "$wall" --budget-s "$BUDGET" \
    "${MODE_ARGS[@]}"
rc=$?
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    # the device tool brings back what is under $OUT: the report and every check's log
    cp "$REPORT" "$OUT/" && tar -czf "$OUT/gpu-check-logs.tar.gz" -C "$WORK" --exclude=site --exclude=hf \
        --exclude=cache --exclude='*.safetensors' --exclude='checkpoint-*' . 2> /dev/null
fi
echo "gpu_check: ${wall}s of the ${BUDGET}s budget; exit $rc"
exit $rc
