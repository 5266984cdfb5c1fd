"""Run by tests as a script, possibly in a virtualenv that has the core install only: the graph on `openai:` engines
against a loopback server, traced, then report what it imported and what the optional parts say when asked for.

    python tests/core_only_probe.py BASE_URL IMAGE TRACE_FILE      # prints one JSON object
"""

import json
import sys

HEAVY = ("torch", "transformers", "trl", "datasets", "peft", "accelerate", "matplotlib", "tensorboard", "vllm")


def main() -> None:
    base_url, image, trace_path = sys.argv[1:4]
    from rapid_agent import RapidContext, load_engine, solve
    from rapid_agent.tracing import flush_tracing, read_trace, setup_tracing

    setup_tracing(trace_path)
    context = RapidContext(captioner=f"openai:vl@{base_url}", reasoner=f"openai:llm@{base_url}")
    state = solve(image, "How many dots?", answer="2", context=context)
    flush_tracing()
    report = {
        "correct": state.get("correct"),
        "errors": state.get("errors"),
        "spans": sorted({s["name"] for s in read_trace(trace_path)}),
        "heavy_modules": sorted(m for m in HEAVY if m in sys.modules),
    }
    try:
        load_engine("hf:/nowhere/model", "captioner")
    except Exception as exc:
        report["hf_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report))


if __name__ == "__main__":
    main()
