"""Answer questions about synthetic scenes offline: a tiny (untrained) Qwen2.5-VL captioner and the real
SmolLM2-135M-Instruct reasoner, through the RAPID graph, in every perception mode.

    python examples/quickstart.py

The captioner here is random, so expect the `none`/`sol` rows to be near chance; `python -m rapid_agent demo`
trains one first. Swap in real models with `--captioner hf:Qwen/Qwen2.5-VL-7B-Instruct --reasoner hf:Qwen/Qwen3-8B`.
"""

import argparse
import tempfile
from pathlib import Path

from rapid_agent import MODES, RapidContext, solve_batch
from rapid_agent.backends import GenerationConfig
from rapid_agent.models import build_tiny_qwen2_5_vl
from rapid_agent.world import generate_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captioner", help="captioner spec (default: a tiny random Qwen2.5-VL)")
    parser.add_argument("--reasoner", default="hf:smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()

    captioner = args.captioner or f"hf:{build_tiny_qwen2_5_vl(Path(tempfile.mkdtemp()) / 'captioner')}"
    context = RapidContext(
        captioner=captioner,
        reasoner=args.reasoner,
        captioner_gen=GenerationConfig(temperature=0.0, max_new_tokens=48),
        reasoner_gen=GenerationConfig(temperature=0.0, max_new_tokens=64),
    )
    items = generate_items(args.samples, seed=0, levels=(1,))
    samples = [{k: it[k] for k in ("id", "image", "question", "answer", "choices")} for it in items]
    for mode in MODES:
        results = solve_batch(samples, context=context.replace(mode=mode))
        accuracy = sum(bool(r.get("correct")) for r in results) / len(results)
        print(f"{mode:9s} accuracy {accuracy:.2f}   e.g. {results[0].get('reasoner_output', '')[:60]!r}")


if __name__ == "__main__":
    main()
