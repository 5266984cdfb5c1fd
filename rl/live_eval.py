"""The live policy measured on benchmarks while it trains: the paper's question (benchmark accuracy through a frozen
reasoner), asked of the weights being trained, at step 0, every `eval_every_steps` and at the last step.

TRL's own evaluation during training is a loss on an eval split. This one runs a fixed, seeded subset of each of
`eval_benchmarks` through the one graph with `rapid_agent.eval.run_eval`: the captioner is the trained model itself
(an `hf` engine wrapping it, which generates greedily in eval mode under inference_mode and hands it back in train
mode), or, with TRL's colocated vLLM rollouts, that vLLM engine after the weight sync; the reasoner is frozen
(`eval_reasoner`, by default the reward's own engine). Answers are scored as `python -m rapid_agent.eval` scores them.

Where the figures go:
- `eval/<benchmark>/accuracy` (the table's cell: accuracy, We-Math's score), `.../accuracy_low`, `.../accuracy_high`
  (its 95% interval), `.../n`, and the cost, `eval/seconds`, `eval/captioner_tokens`, `eval/reasoner_tokens`, are
  logged through the trainer's loggers (TensorBoard, wandb, ...), so `metrics.csv` and `curves.png` get them;
- `live_eval.jsonl` in the output folder: one record per step and benchmark (with the cost and a fingerprint of the
  weights the captioner saw). A run resumed at step N keeps the records up to N (those after N describe steps it
  trains again, as `metrics.csv` drops their rows) and logs N's record again instead of evaluating N again; a fresh
  run starts the file afresh;
- `live_eval/step-<N>/`: the evaluation's per-sample records (the eval store), to read what the policy wrote.

Only the main process evaluates; the others go on to the next step and wait for it there. Under DeepSpeed ZeRO-3
the policy's parameters are partitioned, so one process cannot generate with them alone: the evaluation then needs
vLLM colocated rollouts (checked when the trainer is built).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from rapid_agent.backends import CAPTIONER_DEFAULTS, REASONER_DEFAULTS, Engine
from rapid_agent.config import RapidContext
from rapid_agent.inputs import DEFAULT_MAX_PIXELS
from rapid_agent.perception import DIRECT
from rapid_agent.prompts import Prompts
from rapid_agent.rl.config import RapidRLConfig, VPOConfig

logger = logging.getLogger(__name__)

#: one record per (step, benchmark) in the output folder
EVAL_JSONL = "live_eval.jsonl"
#: per-step eval out folders (`live_eval/step-000010/`) in the output folder
EVAL_DIR = "live_eval"
#: the metric names, as metrics.csv and the loggers see them
PREFIX = "eval/"


class FixedSamples:
    """An adapter whose samples were drawn once (a seeded subset of `adapter`'s); everything else is `adapter`'s."""

    def __init__(self, adapter: Any, samples: Sequence[Any]) -> None:
        self.adapter = adapter
        self.samples = list(samples)

    def load(self) -> list[Any]:
        return self.samples

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)


def seeded_subset(samples: Sequence[Any], limit: int | None, seed: int, label: str) -> list[Any]:
    """`limit` usable samples (skipped rows left out) drawn with `seed`, in dataset order; all of them for None.
    The draw depends on the seed and the benchmark only, so every evaluation and every run sees the same ones."""
    usable = [s for s in samples if not s.skip]
    if limit is None or limit >= len(usable):
        return usable
    chosen = set(random.Random(f"{seed}:{label}").sample(range(len(usable)), limit))
    return [s for i, s in enumerate(usable) if i in chosen]


def load_benchmarks(config: RapidRLConfig) -> list[FixedSamples]:
    """The adapters `eval_benchmarks` and `eval_options` name, each holding its fixed subset."""
    from rapid_agent.eval.adapters import build_adapter, parse_option

    options: dict[str, dict[str, str]] = {}
    for text in config.eval_options:
        label, name, value = parse_option(text)
        options.setdefault(label, {})[name] = value
    out = []
    for text in config.eval_benchmarks:
        adapter = build_adapter(text, options)
        samples = seeded_subset(adapter.load(), config.eval_limit, config.eval_seed, adapter.label)
        if not samples:
            raise ValueError(f"eval_benchmarks: {text!r} holds no usable sample")
        out.append(FixedSamples(adapter, samples))
    return out


def eval_mode(config: RapidRLConfig) -> str:
    return config.eval_mode or config.mode


def eval_context(config: RapidRLConfig, captioner: Engine, templates: Prompts | None = None) -> RapidContext:
    """How the live policy is asked: greedily, with the run's prompts and pixel budget; the reasoner samples as the
    reward's does (vpo), its defaults otherwise. Scored as the eval CLI scores (not the reward's strict parse)."""
    tokens = config.eval_max_new_tokens or config.max_completion_length
    reasoner_gen = config.reasoner_gen if isinstance(config, VPOConfig) else REASONER_DEFAULTS
    return RapidContext(
        captioner=captioner,
        reasoner=None,
        mode=eval_mode(config),
        captioner_gen=dataclasses.replace(CAPTIONER_DEFAULTS, max_new_tokens=tokens),  # greedy
        reasoner_gen=reasoner_gen,
        prompts=templates if templates is not None else config.templates,
        max_pixels=config.max_pixels or DEFAULT_MAX_PIXELS,
        answer_timeout_s=config.answer_timeout_s,
    )


def weights_norm(model: Any) -> float:
    """The L2 norm of every parameter of `model`: a cheap fingerprint of the weights an evaluation saw."""
    import torch

    with torch.no_grad():
        total = sum(float(p.detach().double().square().sum()) for p in model.parameters())
    return math.sqrt(total)


def uses_vllm_engine(config: RapidRLConfig) -> bool:
    """Whether the evaluation can caption with TRL's rollout engine: colocated (in this process), one GPU per
    engine, not put to sleep between steps. Otherwise it captions with the trained model itself."""
    return bool(
        config.use_vllm
        and config.vllm_mode == "colocate"
        and config.vllm_tensor_parallel_size == 1
        and not config.vllm_enable_sleep_mode
    )


def check_live_eval(config: RapidRLConfig) -> None:
    """Refuse an evaluation that one process cannot run: the policy partitioned by ZeRO-3, no rollout engine."""
    from rapid_agent.rl.zero3 import zero3_enabled

    if config.eval_benchmarks and zero3_enabled() and not uses_vllm_engine(config):
        raise ValueError(
            f"eval_benchmarks {config.eval_benchmarks!r}: under DeepSpeed ZeRO-3 the main process cannot generate "
            "with the partitioned policy alone; evaluate with vLLM colocated rollouts (use_vllm, vllm_mode "
            "colocate, vllm_tensor_parallel_size 1, no sleep mode), or evaluate saved checkpoints with "
            "python -m rapid_agent.eval"
        )


@dataclass
class Evaluation:
    """One step's evaluation of one benchmark, as recorded in `live_eval.jsonl`."""

    step: int
    benchmark: str
    accuracy: float | None
    low: float | None
    high: float | None
    n: int
    correct: int
    scored: int
    errored: int
    skipped: int
    seconds: float
    captioner_tokens: int
    reasoner_tokens: int
    captioner: str
    reasoner: str
    mode: str
    weights_norm: float | None

    def metrics(self) -> dict[str, float]:
        name = f"{PREFIX}{self.benchmark}/accuracy"
        out = {name: _nan(self.accuracy), f"{name}_low": _nan(self.low), f"{name}_high": _nan(self.high)}
        return {**out, f"{PREFIX}{self.benchmark}/n": float(self.n), f"{PREFIX}{self.benchmark}/seconds": self.seconds}


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def read_evaluations(path: Path) -> dict[tuple[int, str], Evaluation]:
    """The recorded evaluations by (step, benchmark); the last record of a key wins, a torn last line is ignored."""
    found: dict[tuple[int, str], Evaluation] = {}
    if not path.is_file():
        return found
    names = set(Evaluation.__dataclass_fields__)
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a kill mid-write leaves at most one torn line
        try:
            evaluation = Evaluation(**{k: v for k, v in record.items() if k in names})
        except TypeError:  # not a record of this version
            continue
        found[(evaluation.step, evaluation.benchmark)] = evaluation
    return found


def keep_records(path: Path, step: int) -> None:
    """As training starts at `step`, keep the records of steps up to it: all of a resumed run's past, none of a fresh
    run's (an earlier run's), and none of the steps after a checkpoint, which a resumed run trains again (as
    `metrics.csv` keeps its rows)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if step and _step_of(line) is not None and _step_of(line) <= step
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    tmp.replace(path)


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def step_metrics(evaluations: Sequence[Evaluation]) -> dict[str, float]:
    """What one step's evaluations log: each benchmark's figures, and the cost of the whole evaluation."""
    out: dict[str, float] = {}
    for evaluation in evaluations:
        out.update(evaluation.metrics())
    out[f"{PREFIX}seconds"] = sum(e.seconds for e in evaluations)
    out[f"{PREFIX}captioner_tokens"] = float(sum(e.captioner_tokens for e in evaluations))
    out[f"{PREFIX}reasoner_tokens"] = float(sum(e.reasoner_tokens for e in evaluations))
    return out


class LiveEval(TrainerCallback):
    """Evaluates the live policy at step 0, every `eval_every_steps`, and at the last step (main process only)."""

    def __init__(
        self, config: RapidRLConfig, trainer: Any, reasoner: Engine | None, templates: Prompts | None = None
    ) -> None:
        check_live_eval(config)
        self.templates = templates
        self.config = config
        self.trainer = trainer
        self.reasoner = reasoner
        self.every = config.eval_every_steps
        self.folder = Path(config.output_dir)
        self.benchmarks: list[FixedSamples] | None = None  # loaded at the first evaluation, on the main process

    # when -----------------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            keep_records(self.folder / EVAL_JSONL, state.global_step)
        if state.global_step % self.every == 0:  # step 0, or a resumed run's step when it is an evaluation step
            self.evaluate(state, control)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.evaluate(state, control)

    # what -------------------------------------------------------------------------------------------------------
    def evaluate(self, state: Any, control: Any) -> None:
        step = state.global_step
        if uses_vllm_engine(self.config):
            self._sync_vllm(step)  # every process: the sync may gather parameters
        if not state.is_world_process_zero:
            return
        recorded = read_evaluations(self.folder / EVAL_JSONL)
        if self.benchmarks is None:
            self.benchmarks = load_benchmarks(self.config)
        labels = [b.label for b in self.benchmarks]
        if all((step, label) in recorded for label in labels):
            evaluations = [recorded[(step, label)] for label in labels]
            logger.info("live eval: step %d was evaluated before (%s); logging its records", step, EVAL_JSONL)
        else:
            evaluations = self._run(step)
        # transformers' Trainer.log, not GRPOTrainer's: that one would add (and clear) the step's pending training
        # metrics, which the step's own log line is about to report. Logging clears `should_log`, which that line
        # needs: it is put back
        asked = control.should_log
        Trainer.log(self.trainer, step_metrics(evaluations))
        control.should_log = asked

    def _run(self, step: int) -> list[Evaluation]:
        from rapid_agent.backends.hf import HFEngine
        from rapid_agent.eval.runner import EvalConfig, run_eval

        out = self.folder / EVAL_DIR / f"step-{step:06d}"
        if out.exists():  # a kill mid-evaluation: its records may come from other weights; start the step afresh
            shutil.rmtree(out)
        captioner = self._captioner(step)
        fingerprint = weights_norm(captioner.model) if isinstance(captioner, HFEngine) else None
        context = eval_context(self.config, captioner, self.templates)
        mode = context.mode
        config = EvalConfig(
            out=out,
            reasoners=() if mode == DIRECT else (self.reasoner,),
            modes=(mode,),
            progress=False,
            tables=False,
            seeds=(self.config.eval_seed,),
        )
        evaluations = []
        for benchmark in self.benchmarks or []:
            start = time.perf_counter()
            summary = run_eval([benchmark], context=context, config=config)
            seconds = time.perf_counter() - start
            row = summary.rows[0]
            cell = row.cells[benchmark.label]
            evaluation = Evaluation(
                step=step,
                benchmark=benchmark.label,
                accuracy=None if math.isnan(cell.score) else cell.score,
                low=None if math.isnan(cell.interval.low) else cell.interval.low,
                high=None if math.isnan(cell.interval.high) else cell.interval.high,
                n=cell.n,
                correct=cell.correct,
                scored=cell.scored,
                errored=cell.errored,
                skipped=cell.skipped,
                seconds=round(seconds, 3),
                **_tokens(out, benchmark.label),
                captioner=row.captioner,
                reasoner=row.reasoner,
                mode=mode,
                weights_norm=fingerprint,
            )
            evaluations.append(evaluation)
            with open(self.folder / EVAL_JSONL, "a") as handle:
                handle.write(json.dumps({**evaluation.__dict__, "time": time.time()}) + "\n")
            logger.info(
                "live eval step %d %s: accuracy %.3f [%.3f, %.3f] of %d, %.1f s",
                step,
                benchmark.label,
                _nan(evaluation.accuracy),
                _nan(evaluation.low),
                _nan(evaluation.high),
                evaluation.n,
                seconds,
            )
        return evaluations

    def _captioner(self, step: int) -> Engine:
        """The live policy as a captioner engine: TRL's colocated vLLM engine (synced), or the trained model."""
        spec = f"policy@step-{step}"
        if uses_vllm_engine(self.config):
            from rapid_agent.backends.vllm import VLLMEngine

            return VLLMEngine.from_llm(self.trainer.vllm_generation.llm, role="captioner", spec=spec)
        from rapid_agent.backends.hf import HFEngine

        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        return HFEngine.from_model(model, self.trainer.processing_class, role="captioner", spec=spec)

    def _sync_vllm(self, step: int) -> None:
        """Load the current weights into TRL's rollout engine, as TRL does before a step's rollouts (and mark them
        loaded, so that TRL does not load them again for the next step's)."""
        trainer = self.trainer
        if getattr(trainer, "_last_loaded_step", None) != step:
            trainer.vllm_generation.sync_weights()
            trainer._last_loaded_step = step


def _tokens(out: Path, benchmark: str) -> dict[str, int]:
    """The tokens the captioner and the reasoner wrote for `benchmark` in this evaluation (its cost)."""
    from rapid_agent.eval.store import read_results

    captioner = reasoner = 0
    for record in read_results(out, keep=("benchmark", "tokens")):
        if record.get("benchmark") == benchmark:
            tokens = record.get("tokens") or {}
            captioner += int(tokens.get("captioner_completion") or 0)
            reasoner += int(tokens.get("reasoner_completion") or 0)
    return {"captioner_tokens": captioner, "reasoner_tokens": reasoner}
