"""The demo's settings: one frozen dataclass, a full preset and a quick one (about a minute, what CI runs). The
captioner starts from the perception base shipped in the package (`base.py`: pretrained once, 7,500 steps); each
run's SFT is a short seeded continuation of it (200 steps). The README gives every full run's figures and time.

The captioner-side fields (world, tokenizer, model, SFT) decide the cache key of the trained captioner; the rest
(evaluation, VPO, report) can change without retraining it. The prompts are the library's `Prompts`, shortened:
the captioner is a 1M-parameter model whose training time grows with its prompt length, and SmolLM2-135M (the
reasoner) both answers better and runs faster (prompt processing dominates on CPU) with a short plain prompt than
with the default one written for an 8B reasoner.

Settings chosen from measurements of SmolLM2 answering from gold text (greedy unless said):
- from a full description ("1 red circle, 2 blue squares, ...") it reads a count about half the time, close to
  guessing ("1"), and cannot add or multiply across the list: 9-13/24 per question type, 5/24 for totals.
- from a query-related caption that states only the asked counts, one sentence each ("There are 2 blue shapes.
  There are 3 red shapes."), it reads a count 17/20 and does the named operation: products 13-16/16, sums 13-14/16.
  Word problems ("each red shape is worth 6 points") defeat it (1-5/20), so level 2 names its operation.
- copying a gold solution's boxed answer: 36/48 at temperature 0 and 35/48 at 0.2 (26/48 at 0.4), so the reasoner
  samples at 0.2: seeds still vary its outputs.
- so the world uses levels 1 (read a count) and 2 (two counts and a named operation). The captioner is taught
  worked solutions to the answer only for level 1; on level 2 its tentative solution stops at setting up the named
  operation on the two counts ("Compute 2 * 3."). Like the paper's VLMs it is meant to perceive well and reason
  poorly, and the arithmetic is what the text-only reasoner brings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rapid_agent.backends import REASONER_DEFAULTS, GenerationConfig
from rapid_agent.config import STRICT_ANSWERS
from rapid_agent.perception import MODES
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts
from rapid_agent.rl.caption_judge import JUDGE_PROMPT
from rapid_agent.world import STYLES

#: `captioner_base` values: the perception base shipped in the package (`base.py`), or random weights
BUNDLED, SCRATCH = "bundled", "scratch"

#: bump when the captioner's training code changes in a way that should invalidate cached captioners
SFT_VERSION = 7
#: how far into the world seed's streams the bundled base (`base.py`) was trained: the first 8,000 train items that
#: miss its first 256 test items. A held-out test split stays clear of all of them (`DemoConfig.test_items`)
BASE_TRAIN, BASE_HELD_OUT = 8000, 256
#: the default seed of the table's test split: a stream no setting was tuned on (every tuning run used the world
#: seed's own test split, `test_seed=world_seed`)
HELD_OUT_SEED = 1

DEMO_PROMPTS: Prompts = DEFAULT_PROMPTS.replace(
    # captioner side: short, but still a describe/solve split that never asks the captioner to answer in cap modes
    caption="Describe the image: the count of each colour and shape. Do not answer any question.",
    query_caption="Question: {question}\nDo not answer it. State the counts it asks about.",
    solution="Question: {question}\nSolve it step by step and put the final answer in \\boxed{{}}.",
    caption_and_solution="{caption_instruction}\nThen solve it. Write <caption>...</caption> then <solution>...</solution>.",
    direct_answer="Question: {question}\nAnswer it step by step and put the final answer in \\boxed{{}}.",
    # reasoner side: plain and short (measured: SmolLM2 copies a tentative solution's answer far more reliably)
    system="Answer the question about the image from its description. End with the answer in \\boxed{}.",
    reason="{caption_block}{solution_block}Question: {question}\n{instruction}",
    caption_block="Description: {caption}\n",
    solution_block="Proposed solution (may be wrong): {solution}\n",
    reason_instruction="Answer:",
)

EVAL_MODES: tuple[str, ...] = ("qcap",)
#: the captioner's description styles in the VPO mode and their shares in its supervision (see `mixture.py`)
STYLE_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("counts", 0.3),
    ("inventory", 0.33),
    ("vague", 0.25),
    ("answer", 0.12),
)


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo does, sized for 2 CPU cores. `DemoConfig.preset(quick)` gives the two presets."""

    # world
    n_train: int = field(default=4000, metadata={"help": "world items the captioner is trained on"})
    n_test: int = field(default=48, metadata={"help": "held-out world items every table row is measured on"})
    levels: tuple[int, ...] = field(
        default=(1, 2),
        metadata={"help": "question levels; level 3 is left out because SmolLM2 cannot even copy its answers"},
    )
    image_size: int = field(default=112, metadata={"help": "image side in pixels (a multiple of 28 * grid)"})
    grid: int = field(default=4, metadata={"help": "cells per image side; one object per cell"})
    max_objects: int = field(default=8, metadata={"help": "most objects in one scene"})
    world_seed: int = field(default=0, metadata={"help": "seed of the world"})
    test_seed: int = field(
        default=HELD_OUT_SEED,
        metadata={
            "help": f"seed of the test split every table row is measured on. {HELD_OUT_SEED} (default): a split no "
            "setting was tuned on, clear of every item the captioner and its base trained on; the world seed (0): "
            "the world's own test split, the one every tuning run measured"
        },
    )
    # captioner
    captioner_base: str = field(
        default=BUNDLED,
        metadata={
            "help": "where the captioner's SFT starts: 'bundled' (the perception-pretrained base shipped in the "
            "package, see `rapid_agent/demo/base.py`), 'scratch' (random weights of the sizes below) or the folder "
            "of a base built by `python -m rapid_agent.demo.base --out`; a base fixes the world, sizes and "
            "perception prompts it was trained with"
        },
    )
    vocab_size: int = field(default=1024, metadata={"help": "upper bound of the BPE vocabulary"})
    text_hidden: int = field(default=128, metadata={"help": "captioner language model width"})
    layers: int = field(default=4, metadata={"help": "captioner language model layers"})
    heads: int = field(default=4, metadata={"help": "attention heads"})
    kv_heads: int = field(default=2, metadata={"help": "key/value heads"})
    vision_hidden: int = field(default=64, metadata={"help": "vision tower width"})
    vision_depth: int = field(default=2, metadata={"help": "vision tower blocks"})
    sft_steps: int = field(
        default=200,
        metadata={"help": "SFT optimiser steps (from the bundled base: a short seeded continuation of its mixture)"},
    )
    sft_batch_size: int = field(default=32, metadata={"help": "SFT examples per step"})
    sft_lr: float = field(
        default=5e-4,
        metadata={"help": "SFT peak learning rate (from random weights, 3e-3 and 1200+ steps is a starting point)"},
    )
    sft_aux_weight: float = field(
        default=1.0,
        metadata={
            "help": "weight of the per-cell auxiliary loss on the vision tokens (0: none); used when training from "
            "random weights and in the base's pretraining, left out of SFT from a base"
        },
    )
    sft_count_weight: float = field(
        default=1.0,
        metadata={
            "help": "weight of the auxiliary loss that has the language model predict the image's counts (0: none); "
            "used as `sft_aux_weight` is"
        },
    )
    sft_digit_weight: float = field(
        default=1.0, metadata={"help": "weight of digit tokens (the counts) against the others in the SFT loss"}
    )
    sft_seed: int = field(default=0, metadata={"help": "seed of the captioner's init and data order"})
    sft_solution_levels: tuple[int, ...] | None = field(
        default=(1,),
        metadata={
            "help": "levels whose answers the captioner is taught (None: all): there its counts solution ends in the "
            "boxed answer and it has the bare-answer style; elsewhere it sets up the arithmetic and stops"
        },
    )
    sft_styles: tuple[tuple[str, float], ...] = field(
        default=STYLE_WEIGHTS,
        metadata={"help": "(style, weight) pairs: how often each description style is taught in the VPO mode"},
    )
    sft_style_examples: int = field(
        default=2, metadata={"help": "VPO-mode examples per training item, each in a freshly drawn style"}
    )
    sft_judge_examples: float = field(
        default=0.5, metadata={"help": "caption-judge examples per training item (a share: 0.5 is every other)"}
    )
    # reasoner and evaluation
    reasoner: str | None = field(default=None, metadata={"help": "reasoner spec; None: the bundled SmolLM2 GGUF"})
    reasoner_max_new_tokens: int = field(
        default=40,
        metadata={
            "help": "reasoner budget per answer (not the graph's 4096 of REASONER_DEFAULTS: SmolLM2's answers from "
            "the demo's short prompt fit in 40 tokens, and a CPU run pays for every token)"
        },
    )
    reasoner_temperature: float = field(
        default=0.2,
        metadata={
            "help": "reasoner sampling temperature (not the graph's 0.6 of REASONER_DEFAULTS: SmolLM2 copies a "
            "tentative solution's answer worse when hotter, see above); top_p is the graph's, 1 at temperature 0"
        },
    )
    strict_answers: bool = field(
        default=STRICT_ANSWERS,
        metadata={
            "help": "score only a final \\boxed{} (RapidContext.strict_answers), in the table and in the demo's VPO "
            "alike; the graph's default, off, not training's: SmolLM2 and the tiny captioner rarely write a box, so "
            "the strict parse would score nearly every output 0 and leave VPO no reward to learn from"
        },
    )
    reasoner_batch_size: int = field(default=48, metadata={"help": "reasoner requests per engine call"})
    captioner_max_new_tokens: int = field(default=96, metadata={"help": "captioner budget per output"})
    modes: tuple[str, ...] = field(default=EVAL_MODES, metadata={"help": "perception modes in the table"})
    seeds: int = field(default=2, metadata={"help": "reasoner seeds per table row (mean ± std)"})
    # VPO
    vpo_steps: int = field(default=12, metadata={"help": "VPO optimiser steps (0: skip VPO)"})
    vpo_mode: str = field(default="qcap+sol", metadata={"help": "perception mode VPO trains"})
    vpo_prompts_per_step: int = field(default=6, metadata={"help": "questions per VPO step"})
    vpo_generations: int = field(default=4, metadata={"help": "captioner samples per question (GRPO group)"})
    vpo_lr: float = field(
        default=5e-4,
        metadata={
            "help": "VPO learning rate. Measured on one captioner, 8 steps: 1e-3 moved more samples to the usable style "
            '(87% against 71%) but left 7% of them malformed ("Some."); 5e-4 kept 96% in a descriptive style'
        },
    )
    vpo_temperature: float = field(default=1.0, metadata={"help": "captioner sampling temperature during VPO"})
    vpo_beta: float = field(
        default=0.1,
        metadata={
            "help": "KL coefficient to the SFT captioner (0: no reference). Measured at lr 1e-3: without it the tiny "
            "policy's language broke, 17-64% of held-out samples malformed after 8 steps"
        },
    )
    vpo_caption_penalty: float = field(
        default=1.0,
        metadata={
            "help": "lambda: taken off a correct output whose caption the policy judges no description. At 1 a "
            "penalised right answer earns what a wrong one does, so it never out-ranks a description in its GRPO "
            "group; below 1 it does wherever the group's descriptions all fail (at 0.5 and 0.8 the bare-answer share "
            "stayed at 5-12% in some runs even with the penalty)"
        },
    )
    vpo_compare_penalty: bool = field(
        default=True, metadata={"help": "also run VPO without the penalty, from the same captioner, to compare"}
    )
    vpo_train_items: int = field(default=512, metadata={"help": "training items VPO draws its questions from"})
    style_samples: int = field(
        default=8, metadata={"help": "VPO-mode samples per held-out item when measuring the captioner's styles"}
    )
    curve_every: int = field(
        default=2, metadata={"help": "VPO steps between held-out style measurements for the curves (0: none)"}
    )
    curve_items: int = field(default=32, metadata={"help": "held-out items of each curve measurement"})
    curve_samples: int = field(default=2, metadata={"help": "VPO-mode samples per item of each curve measurement"})
    majority_k: int = field(
        default=3,
        metadata={"help": "reasoner samples per answer of the majority-vote row, on the first seed (1: no such row)"},
    )
    # report
    n_examples: int = field(default=6, metadata={"help": "example items shown in the HTML page"})
    prompts: Prompts = field(default=DEMO_PROMPTS, metadata={"help": "prompt templates (captioner and reasoner)"})

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "sft_steps", "sft_batch_size", "seeds", "vpo_prompts_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.vpo_steps < 0:
            raise ValueError(f"vpo_steps must be >= 0, got {self.vpo_steps!r}")
        if self.vpo_generations < 2:
            raise ValueError(f"vpo_generations must be >= 2 (GRPO compares samples), got {self.vpo_generations!r}")
        for name in ("style_samples", "curve_items", "curve_samples", "majority_k", "vpo_train_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.curve_every < 0:
            raise ValueError(f"curve_every must be >= 0, got {self.curve_every!r}")
        bad = [m for m in self.modes if m not in MODES or m == "none"]
        if bad:
            raise ValueError(f"modes holds unknown or image-less modes {bad!r}; choose from {MODES[1:]}")
        if self.vpo_mode not in MODES or self.vpo_mode == "none":
            raise ValueError(f"vpo_mode must be one of {MODES[1:]}, got {self.vpo_mode!r}")
        if self.sft_solution_levels is not None and not set(self.sft_solution_levels) <= set(self.levels):
            raise ValueError(
                f"sft_solution_levels must be a subset of levels {self.levels!r}, got {self.sft_solution_levels!r}"
            )
        if self.reasoner_temperature < 0:
            raise ValueError(f"reasoner_temperature must be >= 0, got {self.reasoner_temperature!r}")
        if not 0 <= self.vpo_caption_penalty <= 1:
            raise ValueError(f"vpo_caption_penalty must be in [0, 1], got {self.vpo_caption_penalty!r}")
        if not self.captioner_base:
            raise ValueError(
                f"captioner_base must be {BUNDLED!r}, {SCRATCH!r} or a folder, got {self.captioner_base!r}"
            )
        weights = dict(self.sft_styles)
        unknown = sorted(set(weights) - set(STYLES))
        if unknown or any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(
                f"sft_styles must give non-negative weights to styles of {STYLES}, some positive, got {self.sft_styles!r}"
            )
        if self.sft_style_examples < 0 or self.sft_judge_examples < 0:
            raise ValueError(
                f"sft_style_examples and sft_judge_examples must be >= 0, got {self.sft_style_examples!r} and "
                f"{self.sft_judge_examples!r}"
            )

    @classmethod
    def preset(cls, quick: bool = False, **overrides: Any) -> DemoConfig:
        """The full demo, or the quick one (a minute or two: tiny everything, every report file still written)."""
        if not quick:
            return cls(**overrides)
        small = dict(
            n_train=96,
            n_test=6,
            sft_steps=30,
            sft_batch_size=8,
            reasoner_max_new_tokens=16,
            captioner_max_new_tokens=64,
            reasoner_batch_size=16,
            modes=("qcap",),
            seeds=1,
            vpo_steps=2,
            vpo_prompts_per_step=2,
            vpo_generations=4,
            vpo_compare_penalty=False,
            vpo_train_items=16,
            style_samples=2,
            curve_every=1,
            curve_items=4,
            curve_samples=1,
            majority_k=2,
            n_examples=3,
        )
        return cls(**{**small, **overrides})

    def build_world(self, n_train: int | None = None) -> Any:
        """The world's "train"/"test" splits for these settings (`n_train` overrides the training split's size; the
        test split does not depend on it). This "test" is the world seed's own split, which the captioner's training
        excludes and every tuning run measured; the table is measured on `test_items()`."""
        from rapid_agent.world import build_world

        return build_world(
            self.n_train if n_train is None else n_train,
            self.n_test,
            seed=self.world_seed,
            levels=self.levels,
            image_size=self.image_size,
            grid=self.grid,
            max_objects=self.max_objects,
        )

    def test_items(self) -> list[dict[str, Any]]:
        """The table's test split: `n_test` items of the test stream of `test_seed`. Unless that is the world seed's
        own split, items whose scene and question appear among the first items of the world seed's train stream (what
        the captioner and its pretrained base trained on) or of its test stream (what tuning measured) are skipped."""
        from rapid_agent.world import split_items

        world = {
            "levels": self.levels,
            "image_size": self.image_size,
            "grid": self.grid,
            "max_objects": self.max_objects,
        }
        if self.test_seed == self.world_seed:
            return split_items(self.n_test, seed=self.world_seed, split="test", **world)
        seen = split_items(max(self.n_train, BASE_TRAIN) + BASE_HELD_OUT, seed=self.world_seed, split="train", **world)
        seen += split_items(max(self.n_test, BASE_HELD_OUT), seed=self.world_seed, split="test", **world)
        exclude = {item["signature"] for item in seen}
        return split_items(self.n_test, seed=self.test_seed, split="test", exclude=exclude, **world)

    @property
    def reasoner_gen(self) -> GenerationConfig:
        """How the reasoner samples, in the table and in VPO's reward alike."""
        top_p = REASONER_DEFAULTS.top_p if self.reasoner_temperature > 0 else 1.0
        return GenerationConfig(self.reasoner_temperature, top_p, self.reasoner_max_new_tokens)

    def captioner_key_fields(self) -> dict[str, Any]:
        """What the trained captioner depends on (its cache key); evaluation and VPO settings are left out."""
        names = (
            "captioner_base n_train levels image_size grid max_objects world_seed vocab_size text_hidden layers heads kv_heads "
            "vision_hidden vision_depth sft_steps sft_batch_size sft_lr sft_aux_weight sft_count_weight sft_digit_weight sft_seed "
            "sft_solution_levels "
            "sft_styles sft_style_examples sft_judge_examples"
        ).split()
        captioner_prompts = {
            k: getattr(self.prompts, k)
            for k in ("caption", "query_caption", "solution", "caption_and_solution", "direct_answer")
        }
        return {
            "sft_version": SFT_VERSION,
            **{n: getattr(self, n) for n in names},
            "prompts": captioner_prompts,
            "judge_prompt": JUDGE_PROMPT,  # the captioner is taught to answer it
        }

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "prompts"}
        out["prompts"] = dataclasses.asdict(self.prompts)
        return out
