"""Dynamic sampling (DAPO's, arXiv 2503.14476): train on groups whose rewards differ, and measure the ones that do not.

With a binary reward and G samples per image, a group whose samples all score alike (all right, all wrong) has zero
advantage: its reasoner calls were paid and it moves no weight. `DynamicSamplingTrainer` is TRL's `GRPOTrainer`
with one method wrapped, `_generate_and_score_completions`, the one that turns a generation batch into a scored
training batch:

- always: it logs the share of groups with zero reward variance (`<stage>/zero_variance_groups`), the generation
  rounds of the step (`<stage>/generation_rounds`) and, in VPO, the reasoner calls of the step summed over every
  process (`vpo/reasoner_calls`, retries included), so a run without the option shows what it wastes;
- with `dynamic_sampling`: after each round it drops the zero-variance groups and, while any process has fewer
  informative groups than its batch holds, runs another round on prompts drawn afresh, up to
  `dynamic_sampling_max_rounds`; the kept rows of every round then become one batch of the usual shape.

How it departs from DAPO as verl (and EasyR1) run it, a single controller filtering one global batch:
- Every process filters its own groups (`per_device_train_batch_size x steps_per_generation` must hold whole
  groups, which the config checks) and all agree, through one all-gather per round, on whether another round runs:
  each round's generation and reward are collective (TRL gathers rewards; vLLM server mode gathers prompts). A
  process that is already full still takes part in a further round and keeps none of it; verl also discards what
  exceeds the batch.
- When the rounds run out, the step trains on what there is: the informative groups found, then zero-variance
  groups (advantage zero, as without the option) from the earliest rounds to keep every process's batch shape, which
  DeepSpeed and TRL's slicing into `steps_per_generation` need. verl raises instead ("Generated too many").
- Further prompts come from a stream of the training set of their own, seeded by (seed, step, round), the same on
  every process, each taking its slice: the Trainer's dataloader and epoch count stay as they are (verl consumes
  its one dataloader), a resumed run draws the same prompts, and a prompt can come up twice in a step.
- The filter looks at the reward TRL normalises (the weighted sum of the reward functions, skipped samples left
  out), not at correctness alone (verl's `metric: acc`): a correct group that the caption penalty splits is kept.
- Each round's advantages come from TRL as usual, before filtering; with `scale_rewards` `group` or `none` (the
  config refuses `batch`) a group's advantages depend on that group alone, so they equal those computed after
  dropping. Old and reference log-probabilities are computed for every generated group (TRL computes them while
  scoring); verl computes them after filtering.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from datasets import IterableDataset
from trl import GRPOTrainer

from rapid_agent.rl.dynamic_batch import (
    choose_groups,
    combined_rewards,
    merge_rounds,
    take_rows,
    zero_variance_groups,
)


class DynamicSamplingTrainer(GRPOTrainer):
    """`GRPOTrainer` that measures zero-variance groups every step and, with `args.dynamic_sampling`, trains on
    informative groups only (see the module docstring). With the option off its batches are TRL's, unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.dynamic_sampling and isinstance(self.train_dataset, IterableDataset):
            raise ValueError(
                "dynamic_sampling draws further prompts by index: it needs a map-style dataset, got an IterableDataset"
            )
        self._round_rewards: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # TRL returns every process's rewards (gathered); kept for the filter of the round that asked
        self._round_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._round_rewards

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:  # evaluation batches are TRL's
            return super()._generate_and_score_completions(inputs)
        size = self.num_generations
        wanted = len(inputs) // size  # groups this process trains on (whole: the config checks it)
        rank = self.accelerator.process_index
        max_rounds = self.args.dynamic_sampling_max_rounds if self.args.dynamic_sampling else 1
        calls_before = self._reasoner_calls()
        outputs: list[dict[str, Any]] = []
        informative: list[list[bool]] = []
        zero = seen = 0
        for round_ in range(max_rounds):
            batch = inputs if round_ == 0 else self._more_prompts(round_, len(inputs))
            outputs.append(super()._generate_and_score_completions(batch))
            flags = zero_variance_groups(combined_rewards(self._round_rewards, self.reward_weights), size)
            zero, seen = zero + int(flags.sum()), seen + flags.numel()
            informative.append((~flags[rank * wanted : (rank + 1) * wanted]).tolist())
            if round_ + 1 == max_rounds or not self._any_process(sum(map(sum, informative)) < wanted):
                break
        chosen, fillers = choose_groups(informative, wanted)
        output = outputs[0] if len(outputs) == 1 else self._merge(outputs, chosen, size)
        self._log_step(zero / seen, len(outputs), fillers / wanted, calls_before)
        return output

    def _more_prompts(self, round_: int, rows: int) -> list[dict[str, Any]]:
        """This process's slice of `rows` more rows (whole groups): prompts drawn from the training set by a generator
        seeded with (seed, step, round), the same draw on every process."""
        size, world, rank = self.num_generations, self.accelerator.num_processes, self.accelerator.process_index
        prompts, dataset = rows // size, self.train_dataset
        seed = int(np.random.SeedSequence([self.args.seed, self.state.global_step, round_]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        total = prompts * world
        if total <= len(dataset):
            drawn = torch.randperm(len(dataset), generator=generator)[:total]
        else:
            drawn = torch.randint(len(dataset), (total,), generator=generator)
        mine = drawn[rank * prompts : (rank + 1) * prompts].tolist()
        return self.data_collator([dataset[i] for i in mine for _ in range(size)])

    def _any_process(self, flag: bool) -> bool:
        """Whether `flag` holds on any process (a collective: every process calls it in the same round)."""
        return bool(self.accelerator.gather(torch.tensor([flag], device=self.accelerator.device)).any().item())

    def _merge(self, outputs: list[dict[str, Any]], chosen: list[tuple[int, int]], size: int) -> dict[str, Any]:
        """The chosen groups' rows of every round as one batch, with `num_items_in_batch` counted again over every
        process (each round's counted the whole round)."""
        parts = []
        for round_, output in enumerate(outputs):
            rows = [g * size + i for r, g in chosen if r == round_ for i in range(size)]
            if rows:
                parts.append(take_rows(output, rows))
        merged = merge_rounds(parts, self._tokenizer.pad_token_id)
        mask = merged["completion_mask"]
        if merged.get("tool_mask") is not None:
            mask = mask * merged["tool_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        return merged

    def _reasoner_calls(self) -> int:
        """Reasoner requests this process's reward functions have made so far (the VPO reward counts them)."""
        return sum(getattr(func, "reasoner_calls", 0) for func in self.reward_funcs)

    def _log_step(self, zero_share: float, rounds: int, filler_share: float, calls_before: int) -> None:
        metrics, stage = self._metrics["train"], self.args.stage
        metrics[f"{stage}/zero_variance_groups"].append(zero_share)
        metrics[f"{stage}/generation_rounds"].append(float(rounds))
        metrics[f"{stage}/zero_variance_trained"].append(filler_share)
        if any(hasattr(func, "reasoner_calls") for func in self.reward_funcs):
            calls = torch.tensor([self._reasoner_calls() - calls_before], device=self.accelerator.device)
            metrics["vpo/reasoner_calls"].append(float(self.accelerator.gather(calls).sum().item()))
