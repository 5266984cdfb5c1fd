"""The captioner measured against the world's own truth, with no reasoner: how it perceives, which styles it
samples in the VPO mode, and how well it judges captions.

    descriptions(engine, items, config)   greedy "cap" and "qcap" outputs against the world's texts
    styles(engine, items, config, ...)    style shares of VPO-mode samples, per item (for paired comparisons)
    judge(engine, items, config)          the policy judge's agreement with the ground truth on held-out texts

Each takes an `Engine` for the captioner (an `HFEngine` around a model in memory or loaded from disk).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rapid_agent.backends import ChatRequest, Engine, GenerationConfig
from rapid_agent.demo.config import DemoConfig
from rapid_agent.demo.mixture import STYLED_MODE, bare_answers, task_prompt
from rapid_agent.perception import split_output
from rapid_agent.rl.caption_judge import judge_request, parse_verdict
from rapid_agent.world import DESCRIPTIVE, KINDS, STYLES, describes, parse_counts, style_of, style_text

#: the style that states exactly what the question asks: the one SmolLM2 can use
USABLE = "counts"


def _texts(outs: Sequence[Any]) -> list[str]:
    return [o.text.strip() if not isinstance(o, Exception) else "" for o in outs]


def descriptions(engine: Engine, items: Sequence[dict], config: DemoConfig) -> dict[str, Any]:
    """Greedy descriptions ("cap") and query-related captions ("qcap") of `items`: the share exactly right, the
    share with the right counts, and each level's share of exactly right query captions."""
    gen = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=config.captioner_max_new_tokens)
    start = time.perf_counter()
    requests = [ChatRequest(task_prompt("cap", "", config.prompts), image=i["image"]) for i in items]
    requests += [ChatRequest(task_prompt("qcap", i["question"], config.prompts), image=i["image"]) for i in items]
    texts = _texts(engine.generate(requests, gen))
    described, captions = texts[: len(items)], texts[len(items) :]
    n = max(len(items), 1)
    by_level: dict[int, list[bool]] = {}
    for item, text in zip(items, captions, strict=True):
        by_level.setdefault(item["level"], []).append(text == item["query_caption"])
    return {
        "n": len(items),
        "exact": sum(o == i["description"] for o, i in zip(described, items, strict=True)) / n,
        "same_counts": sum(
            parse_counts(o) == parse_counts(i["description"]) for o, i in zip(described, items, strict=True)
        )
        / n,
        "query_caption_exact": {level: sum(v) / len(v) for level, v in sorted(by_level.items())},
        "seconds": time.perf_counter() - start,
        "examples": [
            {"id": i["id"], "gold": i["description"], "output": t, "query_caption": q}
            for i, t, q in zip(items[:3], described[:3], captions[:3])
        ],
    }


def styles(
    engine: Engine, items: Sequence[dict], config: DemoConfig, *, samples: int, temperature: float, seed: int = 0
) -> dict[str, Any]:
    """`samples` VPO-mode outputs per item at `temperature`: the share of each style (overall and per level), the
    share of samples whose text is exactly the world's text in their style (right content), the share of valid
    samples (their caption describes the image), and per item the share of usable (counts-style) and of valid
    samples, for paired comparisons between captioners."""
    prompts = [task_prompt(STYLED_MODE, i["question"], config.prompts) for i in items]
    requests = [ChatRequest(p, image=i["image"]) for i, p in zip(items, prompts) for _ in range(samples)]
    gen = GenerationConfig(
        temperature=temperature, top_p=1.0, max_new_tokens=config.captioner_max_new_tokens, seed=seed
    )
    texts = _texts(engine.generate(requests, gen))
    found: Counter = Counter()
    by_level: dict[int, Counter] = {}
    exact = 0
    usable: dict[str, float] = {}
    descriptive: dict[str, float] = {}
    for k, item in enumerate(items):
        mine = texts[k * samples : (k + 1) * samples]
        kinds = [style_of(split_output(STYLED_MODE, t).caption) for t in mine]
        found.update(kinds)
        by_level.setdefault(item["level"], Counter()).update(kinds)
        for text, kind in zip(mine, kinds, strict=True):
            if kind in STYLES:
                caption, solution = style_text(item, kind)
                exact += text == f"<caption>{caption}</caption>\n<solution>{solution}</solution>"
        usable[item["id"]] = sum(k == USABLE for k in kinds) / samples
        descriptive[item["id"]] = sum(describes(k) for k in kinds) / samples
    total = max(len(texts), 1)

    def shares(counts: Counter) -> dict[str, float]:
        n = max(sum(counts.values()), 1)
        return {s: counts[s] / n for s in KINDS}

    overall = shares(found)
    return {
        "samples": len(texts),
        "temperature": temperature,
        "shares": overall,
        "valid": sum(share for kind, share in overall.items() if describes(kind)),
        "by_level": {level: shares(c) for level, c in sorted(by_level.items())},
        "exact_in_style": exact / total,
        "per_item_usable": usable,
        "per_item_descriptive": descriptive,
        "examples": texts[: min(len(texts), 4)],
    }


def judge(engine: Engine, items: Sequence[dict], config: DemoConfig, *, seed: int = 0) -> dict[str, Any]:
    """The captioner answering the caption judge's prompt (greedy, as `judge: policy` asks it) about held-out texts:
    for every item, its caption in each descriptive style and one bare answer. The share of verdicts that agree
    with the ground truth, per kind of text, and the share it gave no readable verdict on."""
    rng = random.Random(seed)
    texts = [(style_text(item, s)[0], s) for item in items for s in DESCRIPTIVE]
    texts += [(rng.choice(bare_answers(item)), "answer") for item in items]
    gen = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=4)
    verdicts = [
        parse_verdict(o.text) if not isinstance(o, Exception) else None
        for o in engine.generate([judge_request(text) for text, _ in texts], gen)
    ]
    agree: dict[str, list[bool]] = {}
    for (_, style), verdict in zip(texts, verdicts, strict=True):
        agree.setdefault(style, []).append(verdict is (style in DESCRIPTIVE))
    flat = [a for v in agree.values() for a in v]
    return {
        "n": len(flat),
        "agreement": sum(flat) / max(len(flat), 1),
        "by_style": {s: sum(v) / len(v) for s, v in sorted(agree.items())},
        "unparsed": sum(v is None for v in verdicts) / max(len(verdicts), 1),
    }
