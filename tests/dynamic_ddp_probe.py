"""Dynamic sampling's test world (a stand-in reasoner that makes some questions teach nothing), and a script that
tests/test_rl_dynamic.py runs under `accelerate launch` with two CPU processes: three VPO steps with dynamic
sampling, each process writing what every generation gave it (rounds, rows, groups with zero advantage).

    accelerate launch --config_file rl/recipes/accelerate/cpu_ddp.yaml tests/dynamic_ddp_probe.py CAPTIONER_DIR OUT

Import from a test as `from tests.dynamic_ddp_probe import ...`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from rapid_agent.backends.stand_in import FunctionEngine

GOLD = "7"
_TAG = re.compile(r"\[(easy|q)(\d+)\]")


def tagged_world(n: int, easy: int = 0, start: int = 0):
    """World rows, all with gold 7, whose questions end in a tag numbered from `start`: `[easy<i>]` for the first
    `easy`, `[q<i>]` after."""
    from rapid_agent.rl.data import prepare_dataset
    from rapid_agent.world import build_world

    raw = build_world(n, 4, seed=0)["train"]
    raw = raw.map(
        lambda row, i: {"answer": GOLD, "question": f"{row['question']} [{'easy' if i < easy else 'q'}{start + i}]"},
        with_indices=True,
    )
    return prepare_dataset(raw, mode="qcap")[0]


class SplitReasoner(FunctionEngine):
    """Right on every `[easy...]` question (a group that teaches nothing); on every other question right and wrong
    in turn, so that each group of 4 samples of it in a round scores 2 right and 2 wrong, whatever the captions."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        super().__init__(self.answer, spec="split")

    def answer(self, request) -> str:
        kind, number = _TAG.search(request.prompt).groups()
        key = kind + number
        self.seen[key] = self.seen.get(key, 0) + 1
        right = kind == "easy" or self.seen[key] % 2 == 0
        return f"\\boxed{{{GOLD if right else 0}}}"


def main(captioner_dir: str, out: str) -> None:
    from tiny_rl import tiny_settings  # run as a script: this folder is on sys.path

    from rapid_agent.rl.config import VPOConfig
    from rapid_agent.rl.train import build_trainer

    config = VPOConfig(
        **tiny_settings(
            out,
            captioner_dir,
            mode="qcap",
            max_completion_length=8,
            lr_scheduler_type="linear",
            max_steps=3,
            dynamic_sampling=True,
            dynamic_sampling_max_rounds=3,
        )
    )
    trainer = build_trainer(config, reasoner=SplitReasoner(), train_dataset=tagged_world(16, easy=8))
    steps = []
    score = trainer._generate_and_score_completions

    def recorded(inputs):
        batch = score(inputs)
        groups = batch["advantages"].view(-1, 4)
        steps.append(
            {
                "rounds": trainer._metrics["train"]["vpo/generation_rounds"][-1],
                "rows": groups.numel(),
                "zero_advantage_groups": int((groups.abs().amax(dim=1) == 0).sum()),
            }
        )
        return batch

    trainer._generate_and_score_completions = recorded
    trainer.train()
    rank = trainer.accelerator.process_index
    Path(out, f"rank{rank}.json").write_text(json.dumps({"steps": steps}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
