"""Supervised training of the demo's captioner: a tiny Qwen2.5-VL taught to read the synthetic world's scenes.

One set of weights serves every perception mode and the end-to-end row, because it is trained on a mixture: each
training item appears once per mode, with the prompt `captioner_prompt(mode, question)` (or `direct_answer` for the
captioner answering alone) and that mode's target (the scene description, the query-related caption, the short
worked solution, or a caption and the solution in `<caption>`/`<solution>` tags). Worked solutions reach the boxed
answer only on the levels in `solution_levels`; elsewhere they stop at the counts read (`tentative_solution`). The loop is plain torch (AdamW, loss on the target tokens only): TRL's SFTTrainer
adds nothing here and its collator does not know this processor's image-token expansion.

How it departs from plain SFT: the vision tower also gets an auxiliary loss, a linear head on its output tokens that
classifies each grid cell (empty, or which colour and shape). Measured on 2 cores: with the language-model loss
alone the tower had learned nothing after 300 steps (every description wrong); with the auxiliary loss it separates
all cells within 100 steps and descriptions become mostly right in a few hundred. The head is training-only: the
saved captioner is a plain Qwen2.5-VL.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rapid_agent.perception import captioner_prompt
from rapid_agent.prompts import Prompts

#: every captioner task in the mixture; "direct" is the captioner answering alone (the end-to-end row)
TASKS: tuple[str, ...] = ("cap", "qcap", "sol", "cap+sol", "qcap+sol", "direct")


def task_prompt(task: str, question: str, prompts: Prompts) -> str:
    """The captioner's prompt for a mixture task: the graph's own prompt, or `direct_answer` for "direct"."""
    if task == "direct":
        return prompts.direct_answer.format(question=question)
    prompt = captioner_prompt(task, question, prompts)
    if prompt is None:
        raise ValueError(f"task {task!r} has no captioner prompt; choose from {TASKS}")
    return prompt


def tentative_solution(item: dict, solution_levels: Sequence[int] | None = None) -> str:
    """The worked solution the captioner is taught for `item`: the world's own, to the boxed answer, when the item's
    level is in `solution_levels` (None: every level); otherwise it stops at the counts read from the image (the
    query-related caption): the captioner is not taught that level's arithmetic."""
    if solution_levels is None or item["level"] in solution_levels:
        return item["solution"]
    return item["query_caption"]


def task_target(task: str, item: dict, solution_levels: Sequence[int] | None = None) -> str:
    """What the captioner should write for `task` on a world item."""
    if task == "cap":
        return item["description"]
    if task == "qcap":
        return item["query_caption"]
    solution = tentative_solution(item, solution_levels)
    if task in ("sol", "direct"):
        return solution
    if task == "cap+sol":
        return f"<caption>{item['description']}</caption>\n<solution>{solution}</solution>"
    if task == "qcap+sol":
        return f"<caption>{item['query_caption']}</caption>\n<solution>{solution}</solution>"
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")


def corpus(items: Sequence[dict], prompts: Prompts) -> list[str]:
    """The text the tokenizer should encode compactly: every prompt and target the captioner will see."""
    texts = [task_prompt(t, item["question"], prompts) for item in items[:200] for t in TASKS]
    for item in items:
        texts.extend(task_target(t, item) for t in ("cap", "qcap", "sol"))
    return texts


@dataclass
class Encoded:
    """One tokenised training example: ids, where the target starts, and which image it uses."""

    input_ids: list[int]
    target_start: int
    image_index: int


class Encoder:
    """Turns (task, item) into token ids the way the HF engine will at inference: chat template, image tokens
    expanded to the number of visual tokens, the target after the generation prompt, then `<|im_end|>`."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_token = processor.image_token
        self.merge = processor.image_processor.merge_size
        self.eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def images(self, images: Sequence[Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-image pixel patches and the (t, h, w) patch grid of each, preprocessed once."""
        out = self.processor.image_processor(images=list(images), return_tensors="pt")
        grids = out["image_grid_thw"]
        sizes = grids.prod(dim=1).tolist()
        return list(torch.split(out["pixel_values"], sizes)), grids

    def encode(self, prompt: str, target: str, n_image_tokens: int, image_index: int) -> Encoded:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        text = text.replace(self.image_token, self.image_token * n_image_tokens, 1)
        prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        target_ids = self.tokenizer(target, add_special_tokens=False)["input_ids"] + [self.eos]
        return Encoded(prompt_ids + target_ids, len(prompt_ids), image_index)


def build_examples(
    items: Sequence[dict], encoder: Encoder, prompts: Prompts, solution_levels: Sequence[int] | None = None
) -> tuple[list[Encoded], list[torch.Tensor], torch.Tensor]:
    """Every (item, task) pair encoded (targets as `task_target` with `solution_levels`), plus the images."""
    pixels, grids = encoder.images([item["image"] for item in items])
    merge2 = encoder.merge**2
    examples = []
    for i, item in enumerate(items):
        n_tokens = int(grids[i].prod()) // merge2
        for task in TASKS:
            prompt, target = task_prompt(task, item["question"], prompts), task_target(task, item, solution_levels)
            examples.append(encoder.encode(prompt, target, n_tokens, i))
    return examples, pixels, grids


def collate(
    batch: Sequence[Encoded], pixels: Sequence[torch.Tensor], grids: torch.Tensor, pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded ids, labels that are -100 outside the targets, and the batch's image patches in order."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, e.target_start : n] = ids[row, e.target_start : n]
        mask[row, :n] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "pixel_values": torch.cat([pixels[e.image_index] for e in batch]),
        "image_grid_thw": grids[[e.image_index for e in batch]],
    }


def cell_labels(item: dict, grid: int) -> list[int]:
    """The class of each grid cell in row-major order: 0 for empty, else 1 + colour * len(SHAPES) + shape."""
    from rapid_agent.world import COLOURS, SHAPES

    labels = [0] * (grid * grid)
    layout = item["signature"].split("|", 1)[0]  # "row,col:colour shape;..." then "|question"
    for part in filter(None, layout.split(";")):
        cell, what = part.split(":")
        row, col = map(int, cell.split(","))
        colour, shape = what.split()
        labels[row * grid + col] = 1 + COLOURS.index(colour) * len(SHAPES) + SHAPES.index(shape)
    return labels


def token_cells(grids: torch.Tensor, merge: int, grid: int) -> list[torch.Tensor]:
    """For each image, the cell index (row-major, `grid` x `grid`) that each of its visual tokens covers."""
    out = []
    for _, h, w in grids.tolist():
        rows, cols = h // merge, w // merge
        r = torch.arange(rows).repeat_interleave(cols) * grid // rows
        c = torch.arange(cols).repeat(rows) * grid // cols
        out.append(r * grid + c)
    return out


class CellProbe(torch.nn.Module):
    """The auxiliary head: reads the vision tower's merged tokens (via a forward hook) and scores each one's cell."""

    def __init__(self, model: Any, num_classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(model.config.text_config.hidden_size, num_classes)
        self._tokens: torch.Tensor | None = None
        self._hook = model.model.visual.register_forward_hook(self._capture)

    def _capture(self, module: Any, args: Any, output: Any) -> None:
        self._tokens = output.pooler_output  # every image's merged tokens, concatenated in image order

    def loss(self, targets: torch.Tensor) -> torch.Tensor:
        if self._tokens is None:
            raise RuntimeError("the vision tower did not run")
        return torch.nn.functional.cross_entropy(self.head(self._tokens), targets)

    def remove(self) -> None:
        self._hook.remove()


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, *, pool: int = 16
) -> list[list[int]]:
    """One epoch of batches (lists of indices) in random order, each drawn from a shuffled pool of `pool` batches'
    worth of examples sorted by length: batches hold similar lengths, so less of each step is padding."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = sorted(order[start : start + batch_size * pool], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass
class SFTResult:
    steps: int
    seconds: float
    losses: list[float]


def train(
    model: Any,
    examples: Sequence[Encoded],
    pixels: Sequence[torch.Tensor],
    grids: torch.Tensor,
    *,
    pad_id: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    token_targets: Sequence[torch.Tensor] | None = None,
    aux_weight: float = 0.0,
    num_cell_classes: int = 13,
    time_budget_s: float | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> SFTResult:
    """AdamW with linear warm-up and cosine decay; stops at `steps` or when `time_budget_s` is spent.

    `token_targets[i]` holds the cell class of each visual token of image i; with `aux_weight > 0` they train the
    auxiliary cell head (see the module docstring)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    probe = CellProbe(model, num_cell_classes) if aux_weight > 0 and token_targets is not None else None
    params = list(model.parameters()) + (list(probe.parameters()) if probe is not None else [])
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    queue: list[list[int]] = []
    losses: list[float] = []
    model.train()
    start = time.perf_counter()
    step = 0
    for step in range(steps):
        if not queue:
            queue = length_bucketed_batches([len(e.input_ids) for e in examples], batch_size, rng)
        batch = [examples[i] for i in queue.pop()]
        loss = model(**collate(batch, pixels, grids, pad_id)).loss
        if probe is not None:
            targets = torch.cat([token_targets[e.image_index] for e in batch])
            loss = loss + aux_weight * probe.loss(targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
        if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
            break
    if probe is not None:
        probe.remove()
    model.eval()
    return SFTResult(steps=step + 1, seconds=time.perf_counter() - start, losses=losses)


def save(model: Any, processor: Any, path: str | Path) -> Path:
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
