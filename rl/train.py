"""The two training stages on TRL's `GRPOTrainer`: the stages differ only in their rewards. The trainer is
`rapid_agent.rl.dynamic.DynamicSamplingTrainer`, TRL's with one method wrapped: it logs the share of groups that
teach nothing and, with `dynamic_sampling`, trains on informative groups only (off, its batches are TRL's).

    grpo   rule-rewarded GRPO on tentative solutions (accuracy of the boxed answer, optional format reward)
    vpo    Visual Perception Optimisation: the RAPID graph's verdict on each sampled caption is the reward

How VPO departs from textbook GRPO: the reward is not a function of the completion alone but of what separate,
frozen text-only models do with it (through the graph: one batched reasoner call per reasoner per step per
process), a sample whose reasoner call failed is skipped (None, left out of the advantage baseline by TRL >= 1.6)
instead of scored, and a correct output that holds no genuine caption loses lambda, which the policy itself judges.
The recipe runs `grpo` first and `vpo` from its output (a LoRA output is merged in when loaded).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trl
from packaging.version import Version
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import GRPOTrainer

from rapid_agent.backends import Engine, load_engine, parse_spec
from rapid_agent.perception import DIRECT
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts
from rapid_agent.rl.caption_judge import CaptionJudge, PolicyJudge, build_judge
from rapid_agent.rl.config import STAGES, RapidRLConfig, SolutionConfig, VPOConfig
from rapid_agent.rl.data import load_train_dataset
from rapid_agent.rl.dynamic import DynamicSamplingTrainer
from rapid_agent.rl.live_eval import LiveEval, eval_mode
from rapid_agent.rl.metrics import CURVES_PNG, METRICS_CSV, CsvLogger, plot_curves
from rapid_agent.rl.models import load_captioner, peft_config
from rapid_agent.rl.rewards import REWARDS, RewardFunc
from rapid_agent.rl.rollouts import guard_vllm_rollouts
from rapid_agent.rl.zero3 import outside_zero3_init
from rapid_agent.telemetry.training import OTelTrainerCallback

logger = logging.getLogger(__name__)

#: the oldest TRL the trainer works with: 1.6 leaves a skipped (None) reward out of the group baseline (before, it
#: counted as 0, so a failed reasoner call taught the policy), and 1.0 added `log_metric`, which carries vpo/* metrics
MIN_TRL = "1.6.0"


def check_trl(version: str | None = None) -> None:
    """Refuse a TRL older than `MIN_TRL`, saying why (pyproject pins the same floor)."""
    version = version or trl.__version__
    if Version(version) < Version(MIN_TRL):
        raise RuntimeError(
            f"trl {version} is too old for rapid_agent.rl: it needs trl>={MIN_TRL} (skipped samples would be scored "
            "0 instead of left out, and the vpo/* metrics need log_metric). pip install 'trl>={MIN_TRL}'"
        )


def load_reasoners(config: VPOConfig) -> list[Engine]:
    """Every frozen reasoner of `config`, with its engine options; an in-process `hf:` model goes on this
    process's own device unless its options place it (`device` or `device_map`), whole also under ZeRO-3."""
    engines = []
    for spec in config.reasoner_specs:
        options = config.options_for(spec)
        if parse_spec(spec)[0] == "hf" and not {"device", "device_map"} & options.keys():
            options["device"] = str(config.device)
        with outside_zero3_init():  # a frozen model generates outside DeepSpeed: it must be whole (rl/zero3.py)
            engine = load_engine(spec, "reasoner", **options)
        if config.reasoner_max_batch_size is not None:
            engine.max_batch_size = config.reasoner_max_batch_size
        engines.append(engine)
    return engines


def load_reasoner(config: VPOConfig) -> Engine:
    """The first reasoner of `config` (kept for callers that use one)."""
    return load_reasoners(config)[0]


def load_eval_reasoner(config: RapidRLConfig, reasoner: Engine | Sequence[Engine] | None = None) -> Engine | None:
    """The frozen reasoner of the live-policy evaluation: `eval_reasoner`, or the reward's first one, the same
    engine (`reasoner` when given, else the engine cache's); None in mode `direct`, which has no reasoner."""
    if eval_mode(config) == DIRECT:
        return None
    spec = config.eval_reasoner
    if isinstance(config, VPOConfig) and spec in (None, config.reasoner):
        if reasoner is not None:
            return reasoner if isinstance(reasoner, Engine) else reasoner[0]
        return load_reasoners(config)[0]
    options = config.options_for(spec) if isinstance(config, VPOConfig) and spec in config.reasoner_specs else {}
    if parse_spec(spec)[0] == "hf" and not {"device", "device_map"} & options.keys():
        options["device"] = str(config.device)
    with outside_zero3_init():
        return load_engine(spec, "reasoner", **options)


def stage_rewards(
    config: RapidRLConfig,
    *,
    reasoner: Engine | Sequence[Engine] | None = None,
    judge: CaptionJudge | str | None = None,
    templates: Prompts = DEFAULT_PROMPTS,
) -> tuple[list[RewardFunc], list[float] | None, CaptionJudge | None]:
    """The reward functions `config.rewards` names, their weights (`config.reward_weights`), and the judge to bind
    (if any). `reasoner` overrides the config's reasoners (one engine or a list, in the config's order);
    `templates` are the prompts the reasoner is asked with (the captioner's come with the dataset)."""
    if not isinstance(config, (SolutionConfig, VPOConfig)):
        raise TypeError(f"config must be a SolutionConfig or VPOConfig, got {type(config).__name__}")
    if isinstance(config, VPOConfig) and (judge is None or isinstance(judge, str)):
        with outside_zero3_init():
            judge = build_judge(
                judge or config.judge, max_new_tokens=config.judge_max_new_tokens, options=config.judge_options
            )
    funcs = [
        _build_reward(name, config, reasoner=reasoner, judge=judge, templates=templates) for name in config.rewards
    ]
    return funcs, config.reward_weights, judge if isinstance(config, VPOConfig) else None


def _build_reward(name: str, config: RapidRLConfig, *, reasoner: Any, judge: Any, templates: Prompts) -> RewardFunc:
    factory = REWARDS[name]
    if name == "accuracy":
        return factory(mode=config.mode, answer_timeout_s=config.answer_timeout_s)
    if name == "format":
        return factory(mode=config.mode)
    if not isinstance(config, VPOConfig):  # the configs allow "vpo" in the vpo stage only
        raise ValueError(f"reward {name!r} needs a VPOConfig (it asks the reasoners)")
    return factory(
        reasoner if reasoner is not None else load_reasoners(config),
        mode=config.mode,
        gen=config.reasoner_gen,
        judge=judge if config.judges_captions else None,
        caption_penalty=config.caption_penalty,
        retries=config.reasoner_retries,
        retry_wait_s=config.reasoner_retry_wait_s,
        templates=templates,
        answer_timeout_s=config.answer_timeout_s,
        weights=config.reasoner_weights,
        judge_scope=config.judge_scope,
        strict_answers=config.strict_answers,
    )


def build_trainer(
    config: RapidRLConfig,
    *,
    reasoner: Engine | Sequence[Engine] | None = None,
    judge: CaptionJudge | str | None = None,
    train_dataset: Any = None,
    templates: Prompts | None = None,
) -> GRPOTrainer:
    """A ready GRPOTrainer for `config`'s stage. Tests pass stand-in engines and small datasets here; `reasoner`
    may be one engine or a list (one per reasoner of the config)."""
    check_trl()
    templates = templates if templates is not None else config.templates
    model, processor = load_captioner(config)
    dataset = train_dataset if train_dataset is not None else load_train_dataset(config)
    if len(dataset) == 0:
        raise ValueError("train_dataset is empty: there is nothing to train on")
    funcs, _, judge_ = stage_rewards(config, reasoner=reasoner, judge=judge, templates=templates)
    trainer = DynamicSamplingTrainer(
        model=model,
        reward_funcs=funcs,
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config(config, model),
        # the OTel callback is a no-op unless tracing is on (`--trace`, or the OTEL_* variables)
        callbacks=[CsvLogger(Path(config.output_dir) / METRICS_CSV), OTelTrainerCallback()],
    )
    guard_vllm_rollouts(trainer)  # one placeholder per image in colocate mode, the trainer's grid in both modes
    if isinstance(judge_, PolicyJudge):
        judge_.bind(trainer)
    if config.eval_benchmarks:  # the live policy on benchmarks while it trains (rl/live_eval.py): main process only
        reasoner_ = load_eval_reasoner(config, reasoner) if trainer.is_world_process_zero() else None
        trainer.add_callback(LiveEval(config, trainer, reasoner_, templates))
    return trainer


def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint true` means the newest checkpoint in `output_dir` (transformers'
    `get_last_checkpoint`), or when that one's save was cut short, the newest complete one before it (the Trainer
    writes `trainer_state.json` last; `get_last_checkpoint` does not look); none: start fresh. A folder given by
    name must be a complete checkpoint: an error names it otherwise (the Trainer's own would come mid-load)."""
    if value is None or str(value).lower() in ("false", "no", "none", ""):
        return None
    if str(value).lower() in ("true", "yes", "1"):
        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is not None and not _complete(last):
            logger.warning("%s holds no %s (its save was cut short): passing over it", last, TRAINER_STATE_NAME)
            older = [p for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if _complete(p)]
            last = str(max(older, key=lambda p: int(p.name.rsplit("-", 1)[-1]))) if older else None
        if last is None:
            logger.warning(
                "resume_from_checkpoint=true but %s holds no complete checkpoint; starting fresh", output_dir
            )
        return last
    if not _complete(value):
        raise ValueError(f"resume_from_checkpoint: {value!r} is not a complete checkpoint folder")
    return str(value)


def _complete(checkpoint: str | Path) -> bool:
    return (Path(checkpoint) / TRAINER_STATE_NAME).is_file()


def main(stage: str, config: RapidRLConfig) -> Any:
    """Train one stage to the end: checkpoints, metrics.csv and curves.png land in `config.output_dir`."""
    if stage not in STAGES or not isinstance(config, STAGES[stage]):
        raise ValueError(f"stage {stage!r} needs a {STAGES.get(stage, RapidRLConfig).__name__}")
    from rapid_agent.rl.plan import fill_hosts

    fill_hosts(config)  # ${ROLLOUT_HOST} and the like in the recipe, which the launcher sets
    trainer = build_trainer(config)
    result = trainer.train(resume_from_checkpoint=resolve_resume(config.resume_from_checkpoint, config.output_dir))
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero() and config.plot_curves:
        png = plot_curves(Path(config.output_dir) / METRICS_CSV, Path(config.output_dir) / CURVES_PNG)
        logger.info("curves: %s", png)
    return result
