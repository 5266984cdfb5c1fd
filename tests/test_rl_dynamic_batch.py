"""Dynamic sampling's batch arithmetic on hand-made tensors: zero-variance groups, the groups a step keeps, and
rows of rounds padded to different widths joined into one batch."""

from __future__ import annotations

import math

import pytest
import torch

from rapid_agent.rl.dynamic_batch import (
    choose_groups,
    combined_rewards,
    merge_rounds,
    take_rows,
    zero_variance_groups,
)

nan = math.nan
PAD = 9


def test_zero_variance_groups_are_those_whose_scored_rewards_are_all_equal() -> None:
    rewards = torch.tensor(
        [1, 1, 1, 1]  # all right
        + [0, 1, 0, 0]  # one right: informative
        + [nan, 1, nan, nan]  # one scored: nothing to compare
        + [0.9, 0.9, 0.9, 0.9]  # all right, all penalised
        + [nan, 0, 1, nan]  # two scored, different
        + [1, 0.9, 1, 1]  # the penalty tells one apart
    )
    assert zero_variance_groups(rewards, 4).tolist() == [True, False, True, True, False, False]
    with pytest.raises(ValueError, match="groups of 4"):
        zero_variance_groups(torch.zeros(6), 4)


def test_combined_rewards_weigh_the_functions_and_keep_fully_skipped_samples_out() -> None:
    per_func = torch.tensor([[1.0, 1.0], [0.0, nan], [nan, nan]])
    combined = combined_rewards(per_func, torch.tensor([1.0, 0.5]))
    assert combined[:2].tolist() == [1.5, 0.0] and math.isnan(combined[2])


def test_choose_groups_takes_informative_groups_in_order_then_fills_from_the_earliest_rounds() -> None:
    assert choose_groups([[True, False], [False, True]], 2) == ([(0, 0), (1, 1)], 0)
    assert choose_groups([[True, True], [True, True]], 2) == ([(0, 0), (0, 1)], 0)  # surplus dropped
    assert choose_groups([[False, False], [False, True]], 2) == ([(1, 1), (0, 0)], 1)
    assert choose_groups([[False, False]], 2) == ([(0, 0), (0, 1)], 2)  # option off: TRL's batch as it is
    with pytest.raises(ValueError, match="2 wanted"):
        choose_groups([[True]], 2)


def round_(prompts: list[list[int]], completions: list[list[int]], grids: list[int], advantages: list[float]) -> dict:
    """A TRL-shaped round: prompts left-padded, completions right-padded, one image of `grid` patches per row."""
    p_width, c_width = max(map(len, prompts)), max(map(len, completions))
    prompt_ids = torch.tensor([[PAD] * (p_width - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[0] * (p_width - len(p)) + [1] * len(p) for p in prompts])
    completion_ids = torch.tensor([c + [PAD] * (c_width - len(c)) for c in completions])
    completion_mask = torch.tensor([[1] * len(c) + [0] * (c_width - len(c)) for c in completions])
    mm = torch.cat([(prompt_ids == 5).long(), torch.zeros_like(completion_ids)], dim=1)  # token 5: an image token
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "old_per_token_logps": completion_mask.float() * -1.0,
        "mm_token_type_ids": mm,
        "advantages": torch.tensor(advantages),
        "num_items_in_batch": completion_mask.sum(),
        # one image per row; pixel rows carry the row's first prompt token so that they can be traced
        "pixel_values": torch.cat([torch.full((g, 3), float(p[0])) for g, p in zip(grids, prompts)]),
        "image_grid_thw": torch.tensor([[1, 1, g] for g in grids]),
        "num_images": [1] * len(prompts),
    }


def test_rows_of_rounds_padded_to_different_widths_join_into_one_batch() -> None:
    first = round_([[1, 5, 2], [3, 5]], [[7, 8, 9, 10], [11]], [2, 4], [0.5, -0.5])
    second = round_([[4, 5, 5, 6, 2]], [[12, 13]], [1], [1.0])
    merged = merge_rounds([take_rows(first, [1]), take_rows(second, [0])], PAD)

    assert merged["prompt_ids"].tolist() == [[PAD, PAD, PAD, 3, 5], [4, 5, 5, 6, 2]]  # left-padded
    assert merged["prompt_mask"].tolist() == [[0, 0, 0, 1, 1], [1, 1, 1, 1, 1]]
    # right-padded, to the widest round's width (a kept row keeps its round's padding)
    assert merged["completion_ids"].tolist() == [[11, PAD, PAD, PAD], [12, 13, PAD, PAD]]
    assert merged["completion_mask"].tolist() == [[1, 0, 0, 0], [1, 1, 0, 0]]
    assert merged["old_per_token_logps"].tolist() == [[-1.0, 0.0, 0.0, 0.0], [-1.0, -1.0, 0.0, 0.0]]
    # image-token types line up with the prompt tokens and stay zero over the completion
    assert merged["mm_token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0, 0]]
    assert merged["advantages"].tolist() == [-0.5, 1.0]
    assert merged["num_images"] == [1, 1]
    # pixel rows follow their rows: 4 patches of row 3's image, then 1 of row 4's
    assert merged["pixel_values"][:, 0].tolist() == [3.0] * 4 + [4.0]
    assert merged["image_grid_thw"].tolist() == [[1, 1, 4], [1, 1, 1]]
    assert merged["num_items_in_batch"] == first["num_items_in_batch"]  # left to the caller to count again


def test_a_key_of_unknown_padding_whose_width_differs_is_refused_by_name() -> None:
    first = {**round_([[1]], [[7]], [1], [0.0]), "novel": torch.zeros(1, 2)}
    second = {**round_([[2]], [[8]], [1], [0.0]), "novel": torch.zeros(1, 3)}
    with pytest.raises(ValueError, match="'novel'"):
        merge_rounds([take_rows(first, [0]), take_rows(second, [0])], PAD)
