"""The two training stages on TRL's `GRPOTrainer`: nothing is subclassed, the stages differ only in their rewards.

    grpo   rule-rewarded GRPO on tentative solutions (accuracy of the boxed answer, optional format reward)
    vpo    Visual Perception Optimisation: the frozen reasoner's correctness from each sampled caption is the reward

How VPO departs from textbook GRPO: the reward is not a function of the completion alone but of what a separate,
frozen text-only model does with it (one batched reasoner call per step per process), a sample whose reasoner call
failed is skipped (None) instead of scored, and a correct output that holds no genuine caption loses lambda, which
the policy itself judges. The recipe runs `grpo` first and `vpo` from its output.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from rapid_agent.backends import Engine, GenerationConfig, load_engine, parse_spec
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts
from rapid_agent.rl.config import STAGES, RapidRLConfig, SolutionConfig, VPOConfig
from rapid_agent.rl.data import load_train_dataset
from rapid_agent.rl.judge import CaptionJudge, PolicyJudge, build_judge
from rapid_agent.rl.metrics import CURVES_PNG, METRICS_CSV, CsvLogger, plot_curves
from rapid_agent.rl.models import load_captioner, peft_config
from rapid_agent.rl.rewards import RewardFunc, accuracy_reward, format_reward, vpo_reward

logger = logging.getLogger(__name__)


def load_reasoner(config: VPOConfig) -> Engine:
    """The frozen reasoner of `config`; an in-process model goes on this process's own device."""
    spec = config.reasoner
    kwargs: dict[str, Any] = {"device": str(config.device)} if parse_spec(spec)[0] == "hf" else {}
    engine = load_engine(spec, "reasoner", **kwargs)
    if config.reasoner_max_batch_size is not None:
        engine.max_batch_size = config.reasoner_max_batch_size
    return engine


def stage_rewards(
    config: RapidRLConfig,
    *,
    reasoner: Engine | None = None,
    judge: CaptionJudge | str | None = None,
    templates: Prompts = DEFAULT_PROMPTS,
) -> tuple[list[RewardFunc], list[float] | None, CaptionJudge | None]:
    """The reward functions of the stage `config` belongs to, their weights, and the judge to bind (if any).
    `templates` are the prompts the reasoner is asked with (the captioner's come with the dataset)."""
    if isinstance(config, SolutionConfig):
        funcs = [accuracy_reward(mode=config.mode, answer_timeout_s=config.answer_timeout_s)]
        if config.format_reward_weight > 0:
            return [*funcs, format_reward(mode=config.mode)], [1.0, config.format_reward_weight], None
        return funcs, None, None
    if not isinstance(config, VPOConfig):
        raise TypeError(f"config must be a SolutionConfig or VPOConfig, got {type(config).__name__}")
    if judge is None or isinstance(judge, str):
        spec = judge or config.judge
        judge = build_judge(spec, max_new_tokens=config.judge_max_new_tokens)
    gen = GenerationConfig(config.reasoner_temperature, config.reasoner_top_p, config.reasoner_max_new_tokens)
    reward = vpo_reward(
        reasoner if reasoner is not None else load_reasoner(config),
        mode=config.mode,
        gen=gen,
        judge=judge if config.judges_captions else None,
        caption_penalty=config.caption_penalty,
        retries=config.reasoner_retries,
        templates=templates,
        answer_timeout_s=config.answer_timeout_s,
    )
    return [reward], None, judge


def build_trainer(
    config: RapidRLConfig,
    *,
    reasoner: Engine | None = None,
    judge: CaptionJudge | str | None = None,
    train_dataset: Any = None,
    templates: Prompts = DEFAULT_PROMPTS,
) -> GRPOTrainer:
    """A ready GRPOTrainer for `config`'s stage. Tests pass stand-in engines and small datasets here."""
    model, processor = load_captioner(config)
    dataset = train_dataset if train_dataset is not None else load_train_dataset(config)
    funcs, weights, judge_ = stage_rewards(config, reasoner=reasoner, judge=judge, templates=templates)
    if weights is not None:
        config.reward_weights = weights
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config(config, model),
        callbacks=[CsvLogger(Path(config.output_dir) / METRICS_CSV)],
    )
    if isinstance(judge_, PolicyJudge):
        judge_.bind(trainer)
    return trainer


def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint true` means the newest complete checkpoint in `output_dir` (none: start fresh)."""
    if value is None or str(value).lower() in ("false", "no", "none", ""):
        return None
    if str(value).lower() in ("true", "yes", "1"):
        complete = [p for p in Path(output_dir).glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        if not complete:
            logger.warning(
                "resume_from_checkpoint=true but %s holds no complete checkpoint; starting fresh", output_dir
            )
            return None
        return str(max(complete, key=lambda p: int(p.name.rsplit("-", 1)[-1])))
    if not (Path(value) / "trainer_state.json").is_file():
        raise ValueError(f"resume_from_checkpoint: {value!r} is not a complete checkpoint folder")
    return str(value)


def main(stage: str, config: RapidRLConfig) -> Any:
    """Train one stage to the end: checkpoints, metrics.csv and curves.png land in `config.output_dir`."""
    if stage not in STAGES or not isinstance(config, STAGES[stage]):
        raise ValueError(f"stage {stage!r} needs a {STAGES.get(stage, RapidRLConfig).__name__}")
    trainer = build_trainer(config)
    result = trainer.train(resume_from_checkpoint=resolve_resume(config.resume_from_checkpoint, config.output_dir))
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero() and config.plot_curves:
        png = plot_curves(Path(config.output_dir) / METRICS_CSV, Path(config.output_dir) / CURVES_PNG)
        logger.info("curves: %s", png)
    return result
