"""What the demo's captioner is taught: its tasks, their prompts and targets, and the mixture of them.

One set of weights serves every row of the demo, so the captioner is trained on a mixture. Per training item:

    cap        the full description ("2 red circles, 1 blue square.")
    qcap       the counts the question asks about ("There are 3 red shapes.")
    qcap+sol   the VPO mode, open-ended like a pretrained VLM: a caption and a tentative solution in one of the
               world's styles (`rapid_agent.world.styles`), drawn by `styles` weights, a fresh draw per example
    direct     the captioner answering alone (the end-to-end row): the worked solution where its level is taught,
               else the counts the question asks about and no answer (it is not taught the arithmetic: a
               "Compute 2 * 3." here would be scored right by math-verify, which evaluates the expression)
    judge      text only: the few-shot yes/no prompt of `rapid_agent.rl.caption_judge` about one caption in some style;
               "yes" for a description, "no" for a bare answer. VPO's `judge: policy` asks the captioner this.

A style whose text needs the answer (the bare answer; the counts style's boxed solution) is taught only on the
levels in `solution_levels`: elsewhere the captioner is not taught the arithmetic, and its counts solution stops at
setting it up ("Compute 2 * 3."), like a VLM that perceives well and reasons poorly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from rapid_agent.perception import captioner_prompt
from rapid_agent.prompts import Prompts
from rapid_agent.rl.caption_judge import judge_request
from rapid_agent.world import DESCRIPTIVE, STYLES, style_text
from rapid_agent.world.styles import counts_solution

#: every captioner task in the mixture; "direct" is the captioner answering alone, "judge" the caption judge
TASKS: tuple[str, ...] = ("cap", "qcap", "qcap+sol", "direct", "judge")
#: the perception mode whose outputs vary in style (the VPO mode)
STYLED_MODE = "qcap+sol"
#: the judge's replies
YES, NO = "yes", "no"


@dataclass(frozen=True)
class Example:
    """One teaching example before tokenisation: `image_index` names the item whose image it shows (None: text
    only), `style` the description style of a styled or judged text."""

    task: str
    prompt: str
    target: str
    image_index: int | None
    style: str | None = None


def task_prompt(task: str, question: str, prompts: Prompts) -> str:
    """The captioner's prompt for an image task: the graph's own prompt, or `direct_answer` for "direct"."""
    if task == "direct":
        return prompts.direct_answer.format(question=question)
    prompt = captioner_prompt(task, question, prompts) if task in ("cap", "qcap", STYLED_MODE) else None
    if prompt is None:
        raise ValueError(f"task {task!r} has no image prompt; choose from {TASKS[:-1]}")
    return prompt


def tagged(caption: str, solution: str) -> str:
    """A combined mode's output: the caption and the tentative solution in their tags."""
    return f"<caption>{caption}</caption>\n<solution>{solution}</solution>"


def needs_answer(style: str, item: dict) -> bool:
    """Whether `style`'s text for `item` holds the answer (the captioner must know it to write it)."""
    return style == "answer" or (style == "counts" and "\\boxed" in counts_solution(item))


def styles_for(item: dict, weights: dict[str, float], solution_levels: Sequence[int] | None) -> dict[str, float]:
    """The styles the captioner is taught for `item` and their weights: those needing the answer only where the
    item's level is taught to the answer."""
    taught = solution_levels is None or item["level"] in solution_levels
    out = {s: w for s, w in weights.items() if w > 0 and (taught or not needs_answer(s, item))}
    if not out:
        raise ValueError(f"no style with a positive weight can be taught at level {item['level']}: {weights!r}")
    return out


def task_target(task: str, item: dict, style: str | None = None, *, taught: bool = True) -> str:
    """What the captioner should write for an image task on a world item (`style` for the styled mode; `taught`:
    whether the item's level is one whose answers the captioner is taught)."""
    if task == "cap":
        return item["description"]
    if task == "qcap":
        return item["query_caption"]
    if task == "direct":
        return item["solution"] if taught else item["query_caption"]
    if task == STYLED_MODE:
        if style is None:
            raise ValueError(f"task {STYLED_MODE!r} needs a style; choose from {STYLES}")
        return tagged(*style_text(item, style))
    raise ValueError(f"unknown image task {task!r}; choose from {TASKS[:-1]}")


#: how often each descriptive style is the "yes" text of a judge example. The counts style gets the most: its
#: level-1 captions are one short sentence ("There are 2 circles."), the descriptions closest to a bare answer; with
#: the styles drawn evenly the captioner judged 18 of 64 of those without a colour no description (every other
#: style 63-64 of 64), and VPO's penalty then took the reward off right samples in the style the reasoner can use
JUDGE_STYLES: dict[str, float] = {"counts": 0.6, "inventory": 0.15, "objects": 0.1, "vague": 0.15}


def bare_answers(item: dict) -> list[str]:
    """The forms a bare answer takes in judge texts: the answer style's wording, a lone boxed or plain number."""
    answer = item["answer"]
    return [f"The answer is {answer}.", f"\\boxed{{{answer}}}", answer]


def judge_text(item: dict, rng: random.Random) -> tuple[str, str]:
    """(text, its style) for one judge example: a bare answer half of the time, else a caption in a descriptive
    style drawn by `JUDGE_STYLES`."""
    if rng.random() < 0.5:
        return rng.choice(bare_answers(item)), "answer"
    style = rng.choices(list(JUDGE_STYLES), list(JUDGE_STYLES.values()))[0]
    return style_text(item, style)[0], style


def judge_example(text: str, describes: bool, style: str | None = None) -> Example:
    """The judge prompt of `rapid_agent.rl.caption_judge` about `text`, answered yes (a description) or no."""
    return Example("judge", judge_request(text).prompt, YES if describes else NO, None, style)


def plan(
    items: Sequence[dict],
    *,
    prompts: Prompts,
    style_weights: dict[str, float],
    style_examples: int,
    judge_examples: float,
    solution_levels: Sequence[int] | None,
    seed: int,
) -> list[Example]:
    """Every example of the mixture for `items` (image indices point into `items`), drawn with `seed`:
    cap, qcap and direct once per item, `style_examples` styled outputs per item, and a judge example for a
    `judge_examples` share of the items (more than one per item when it is above 1)."""
    unknown = set(style_weights) - set(STYLES)
    if unknown:
        raise ValueError(f"unknown styles {sorted(unknown)}; choose from {STYLES}")
    rng = random.Random(seed)
    examples: list[Example] = []
    for i, item in enumerate(items):
        question = item["question"]
        taught = solution_levels is None or item["level"] in solution_levels
        for task in ("cap", "qcap", "direct"):
            target = task_target(task, item, taught=taught)
            examples.append(Example(task, task_prompt(task, question, prompts), target, i))
        weights = styles_for(item, style_weights, solution_levels)
        names, values = list(weights), list(weights.values())
        for style in rng.choices(names, values, k=style_examples):
            prompt = task_prompt(STYLED_MODE, question, prompts)
            examples.append(Example(STYLED_MODE, prompt, task_target(STYLED_MODE, item, style), i, style))
        whole, part = divmod(judge_examples, 1)
        for _ in range(int(whole) + (rng.random() < part)):
            text, style = judge_text(item, rng)
            examples.append(judge_example(text, style in DESCRIPTIVE, style))
    return examples


def corpus(items: Sequence[dict], prompts: Prompts) -> list[str]:
    """The text the tokenizer should encode compactly: every prompt and target the captioner will see."""
    texts = [task_prompt(t, item["question"], prompts) for item in items[:200] for t in TASKS[:-1]]
    # the judge's few-shot prompt is long and identical each time: repeated so that BPE merges its words
    texts += [judge_request("").prompt] * 50
    # the chat template's own words wrap every example: without merges for them they cost ~30 tokens each time,
    # a quarter of an average example (measured: 118 tokens per example before, see `SFT_VERSION` 6)
    texts += ["system\nYou are a helpful assistant.", "user\n", "assistant\n"] * 500
    for item in items:
        texts += [item["description"], item["query_caption"], counts_solution(item)]
        texts += [tagged(*style_text(item, s)) for s in STYLES]
    return texts
