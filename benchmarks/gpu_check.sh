#!/usr/bin/env bash
# The real-scale path on one GPU, offline, in about 6 minutes (at most ~9.5) on an H200:
#
#   env      GPU, torch, transformers, trl, vllm versions
#   build    a small random Qwen2.5-VL captioner and SmolLM2-135M-Instruct (from its GGUF), built here: no hub
#   engines  the vLLM captioner and reasoner engines in one process (default GPU shares 0.4 + 0.5)
#   masters  one step at lr 1e-6 under bf16 autocast on float32 masters, against pure bfloat16 weights
#   grpo     3 GRPO steps, TRL's vLLM generation (colocate), bf16 on float32 masters
#   vpo      3 VPO steps, colocated rollouts, the reasoner behind `vllm serve` (the recipes' OpenAI engine path),
#            the reward through the graph, the policy judging every caption
#
# then a summary table. Usage (from anywhere; needs the project and vllm installed in $PYTHON's environment):
#
#   bash benchmarks/gpu_check.sh            # work folder in /tmp; GPU_CHECK_DIR=... to choose it
#
# Each check runs in its own process under a time limit, so one failure is reported and the rest still run.
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
WORK=${GPU_CHECK_DIR:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
RESULTS="$WORK/results.jsonl"
DEADLINE=$(( $(date +%s) + ${GPU_CHECK_BUDGET_S:-570} ))
PORT=${GPU_CHECK_PORT:-8011}
mkdir -p "$WORK" && : > "$RESULTS"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAPID_AGENT_CACHE="$WORK/cache"
export TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# TRL's colocated vLLM joins a torch.distributed group even in one process
export RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=${GPU_CHECK_MASTER_PORT:-29531}

SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT

if ! "$PY" -c "import rapid_agent.rl" 2>/dev/null; then
    echo "installing the project (editable, no dependencies) into $("$PY" -c 'import sys; print(sys.prefix)')"
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . || echo "install failed; checks will say why"
fi

# run NAME LIMIT_S [ARGS...]: one check under min(LIMIT_S, time left); its log in $WORK/NAME.log
run() {
    local name=$1 limit=$2; shift 2
    local left=$(( DEADLINE - $(date +%s) ))
    (( left < limit )) && limit=$left
    if (( limit < 20 )); then
        echo "{\"check\": \"$name\", \"ok\": null, \"skipped\": \"no time left in the budget\"}" >> "$RESULTS"
        return
    fi
    local start=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=15 "$limit" "$PY" benchmarks/gpu_check.py "$name" --work "$WORK" "$@" > "$WORK/$name.log" 2>&1
    local rc=$? seconds=$(( $(date +%s) - start ))
    if grep -q '^RESULT ' "$WORK/$name.log"; then
        grep '^RESULT ' "$WORK/$name.log" | tail -1 | sed 's/^RESULT //' \
            | "$PY" -c "import json,sys; r=json.load(sys.stdin); r['wall_s']=$seconds; print(json.dumps(r))" >> "$RESULTS"
    else
        local why="exit $rc"; (( rc == 124 || rc == 137 )) && why="timed out after ${limit}s"
        local tail_text=$(tail -c 600 "$WORK/$name.log" | tr '\n\r\t"\\' '     ' | tr -cd '[:print:]')
        echo "{\"check\": \"$name\", \"ok\": false, \"wall_s\": $seconds, \"error\": \"$why: $tail_text\"}" >> "$RESULTS"
    fi
}

run env 60
run build 180
run engines 240
# the reasoner server for the vpo check starts now, on its own share, and loads while masters and grpo run
"$PY" -m vllm.entrypoints.openai.api_server --model "$WORK/reasoner" --served-model-name reasoner \
    --port "$PORT" --gpu-memory-utilization 0.2 --max-model-len 4096 --enforce-eager \
    > "$WORK/reasoner_server.log" 2>&1 &
SERVER_PID=$!
run masters 120
run grpo 240
for _ in $(seq 1 90); do
    "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=2)" \
        2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 2
done
run vpo 300 --reasoner-url "http://127.0.0.1:$PORT/v1" --served-name reasoner
cleanup; SERVER_PID=""

"$PY" - "$RESULTS" <<'EOF'
import json, sys

rows = []
for line in open(sys.argv[1]):
    try:
        rows.append(json.loads(line))
    except json.JSONDecodeError:
        rows.append({"check": "?", "ok": False, "error": line.strip()[:300]})
skip = {"check", "ok", "wall_s", "steps"}
print("\n" + "=" * 100)
print(f"{'check':<9}{'result':<8}{'wall s':>7}  measured")
print("-" * 100)
for r in rows:
    status = "skipped" if r.get("ok") is None else "ok" if r["ok"] else "FAIL"
    figures = ", ".join(f"{k}={v}" for k, v in r.items() if k not in skip)
    print(f"{r['check']:<9}{status:<8}{r.get('wall_s', ''):>7}  {figures}")
    for i, step in enumerate(r.get("steps") or [], 1):
        print(f"{'':<26}step {i}: " + ", ".join(f"{k}={float(v):.3g}" for k, v in step.items()))
print("=" * 100)
failed = [r["check"] for r in rows if r.get("ok") is False]
print("all checks passed" if not failed else f"failed: {', '.join(failed)} (logs in {sys.argv[1].rsplit('/', 1)[0]})")
EOF
