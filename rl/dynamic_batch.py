"""Batch arithmetic of dynamic sampling: which groups teach nothing, which groups a step trains on, and one training
batch made of rows kept from several generation rounds.

A round is what TRL's `GRPOTrainer._generate_and_score_completions` returns for one generation batch: a dict of
per-row values (padded tensors, lists) plus the 0-d `num_items_in_batch`, with the rows of a group of
`num_generations` samples consecutive. Rows of different rounds are padded to different widths: prompt-side
tensors on the left, completion-side tensors on the right, and token-type ids over both parts. `merge_rounds` joins
kept rows of several rounds into one such dict (the pixel values split per row first, TRL's own
`split_pixel_values_by_grid`, and joined again after); a key it does not know whose width differs between rounds
is an error naming the key, not a silent misalignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

#: left-padded (TRL pads prompts on the left)
PROMPT_SIDE = ("prompt_ids", "prompt_mask")
#: right-padded, one column per completion token (sequence-level importance ratios are one column wide)
COMPLETION_SIDE = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
)
#: over prompt and completion: the prompt part left-padded, the completion part right-padded
WHOLE_SEQUENCE = ("token_type_ids", "mm_token_type_ids")
#: padded with the tokenizer's pad token, as TRL pads them
TOKEN_IDS = ("prompt_ids", "completion_ids")
#: padded with 1, as TRL pads it (the completion mask hides those places anyway); everything else with 0
PAD_ONE = ("tool_mask",)


def combined_rewards(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The reward TRL normalises per group (`multi_objective_aggregation: sum_then_normalize`): the weighted sum of
    the reward functions, NaN where every function skipped the sample."""
    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return rewards


def zero_variance_groups(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """One flag per group of `num_generations` consecutive rewards: True where every advantage of the group is zero,
    i.e. its scored rewards are all equal (as TRL's `frac_reward_zero_std` tells them: `isclose`), or fewer than two
    of them were scored (skipped samples, NaN, get advantage 0)."""
    if rewards.numel() % num_generations:
        raise ValueError(f"{rewards.numel()} rewards do not make groups of {num_generations}")
    grouped = rewards.view(-1, num_generations)
    scored = ~torch.isnan(grouped)
    high = torch.where(scored, grouped, -torch.inf).amax(dim=1)
    low = torch.where(scored, grouped, torch.inf).amin(dim=1)
    return (scored.sum(dim=1) < 2) | torch.isclose(high, low)


def choose_groups(informative: Sequence[Sequence[bool]], wanted: int) -> tuple[list[tuple[int, int]], int]:
    """The (round, group) pairs a step trains on, given each round's informative flags: informative groups in the
    order they were generated, up to `wanted`; when the rounds ran out first, as many zero-variance groups (their
    advantage is zero, they only keep the batch's shape) from the earliest rounds. Returns the pairs and how many of
    them are such fillers."""
    chosen = [(r, g) for r, flags in enumerate(informative) for g, ok in enumerate(flags) if ok][:wanted]
    fill = [(r, g) for r, flags in enumerate(informative) for g, ok in enumerate(flags) if not ok]
    fillers = fill[: wanted - len(chosen)]
    if len(chosen) + len(fillers) < wanted:
        raise ValueError(f"{len(chosen) + len(fillers)} groups generated, {wanted} wanted")
    return chosen + fillers, len(fillers)


def take_rows(batch: dict[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """The rows `rows` of one round's dict, pixel values split per row (TRL's `split_pixel_values_by_grid`, which
    leaves a dict without images as it is); 0-d tensors and None are kept."""
    batch = split_pixel_values_by_grid(batch)
    index = torch.as_tensor(list(rows), dtype=torch.long)

    def take(value: Any) -> Any:
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        if isinstance(value, torch.Tensor):
            return value[index.to(value.device)]
        return [value[i] for i in rows]

    return {key: take(value) for key, value in batch.items()}


def _pad_to(value: torch.Tensor, width: int, left: bool, fill: float) -> torch.Tensor:
    missing = width - value.shape[1]
    return F.pad(value, (missing, 0) if left else (0, missing), value=fill) if missing else value


def _join(key: str, values: list[torch.Tensor], prompt_widths: list[int], pad_token_id: int) -> torch.Tensor:
    fill = pad_token_id if key in TOKEN_IDS else 1 if key in PAD_ONE else 0
    if key in PROMPT_SIDE or key in COMPLETION_SIDE:
        width = max(v.shape[1] for v in values)
        return torch.cat([_pad_to(v, width, key in PROMPT_SIDE, fill) for v in values])
    if key in WHOLE_SEQUENCE:
        prompts = [v[:, :p] for v, p in zip(values, prompt_widths)]
        completions = [v[:, p:] for v, p in zip(values, prompt_widths)]
        prompt_width = max(p.shape[1] for p in prompts)
        completion_width = max(c.shape[1] for c in completions)
        return torch.cat(
            [
                torch.cat([_pad_to(p, prompt_width, True, 0), _pad_to(c, completion_width, False, 0)], dim=1)
                for p, c in zip(prompts, completions)
            ]
        )
    if len({tuple(v.shape[1:]) for v in values}) > 1:
        shapes = [tuple(v.shape) for v in values]
        raise ValueError(f"cannot merge {key!r}: its rows differ in shape between rounds ({shapes}), padding unknown")
    return torch.cat(values)


def merge_rounds(parts: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """One generation-batch dict, in TRL's form, from `parts` (the rows kept of each round, from `take_rows`), padded
    to common widths. `num_items_in_batch`, a count over every process, is left to the caller."""
    keys = list(parts[0])
    if any(list(p) != keys for p in parts[1:]):
        raise ValueError(f"rounds hold different keys: {[sorted(p) for p in parts]}")
    prompt_widths = [p["prompt_ids"].shape[1] for p in parts]
    merged: dict[str, Any] = {}
    for key in keys:
        values = [p[key] for p in parts]
        if all(v is None for v in values):
            merged[key] = None
        elif isinstance(values[0], torch.Tensor) and values[0].ndim == 0:
            merged[key] = values[0]
        elif isinstance(values[0], torch.Tensor):
            merged[key] = _join(key, values, prompt_widths, pad_token_id)
        else:
            merged[key] = [row for v in values for row in v]
    return unsplit_pixel_values_by_grid(merged)
