"""The demo's table rows: the world adapter's held-out items through `rapid_agent.eval`'s runner, in a few graph
modes, each captioner stage under its own name. Nothing here runs or scores a sample itself.

Per captioner stage (`sft`, `vpo`, `vpo-no-penalty`), records appended to the report folder:

    STAGE        -               direct     the captioner answering alone (SFT stage only)
    STAGE        REASONER        qcap       `config.modes`, greedy captioner (SFT stage only)
    STAGE        REASONER        qcap+sol   the VPO mode decoded as deployed: greedy captioner
    STAGE T=1    REASONER        qcap+sol   the VPO mode as the policy samples it (captioner seeded like the reasoner)
    STAGE T=1    world-solver    qcap+sol   the same sampled captions, answered by the world's exact solver
    vpo T=1      REASONER (k)    qcap+sol   the same captions again, a majority of k reasoner samples (seed 0 only)

Every row runs `config.seeds` reasoner seeds; the last row replays cached perceptions with a captioner that refuses
to be called (`perceive=False`): zero captioner calls.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from rapid_agent.backends import Engine, GenerationConfig
from rapid_agent.config import RapidContext
from rapid_agent.demo.config import DemoConfig
from rapid_agent.demo.solver import MajorityVote, WorldSolver
from rapid_agent.eval.adapters.world import World
from rapid_agent.eval.runner import EvalConfig, run_eval
from rapid_agent.eval.sweep import CachedCaptioner
from rapid_agent.perception import DIRECT

#: the benchmark label of the demo's items
BENCHMARK = "world"


def sampled(stage: str, config: DemoConfig) -> str:
    """The captioner label of `stage` sampling at the VPO temperature."""
    return f"{stage} T={config.vpo_temperature:g}"


def labelled(engine: Engine, label: str) -> Engine:
    """`engine` under another name (the captioner column of the table): a shallow copy, sharing its model."""
    named = copy.copy(engine)
    named.spec = label
    return named


def context(config: DemoConfig, captioner: Any, reasoner: Any, *, temperature: float = 0.0) -> RapidContext:
    """The demo's graph settings; the captioner decodes greedily unless `temperature` > 0 (top_p 1: the policy)."""
    return RapidContext(
        captioner=captioner,
        reasoner=reasoner,
        prompts=config.prompts,
        captioner_gen=GenerationConfig(
            temperature=temperature, top_p=1.0, max_new_tokens=config.captioner_max_new_tokens
        ),
        reasoner_gen=config.reasoner_gen,
        strict_answers=config.strict_answers,
    )


def _eval(
    out: Path, adapter: World, context: RapidContext, config: DemoConfig, progress: bool, **options: Any
) -> None:
    options.setdefault("seeds", tuple(range(config.seeds)))
    # one batch of the whole split at a time: the engines see it as one call, as the demo's engines are sized for
    settings = EvalConfig(
        out=out, batch_size=config.reasoner_batch_size, concurrency=1, progress=progress, tables=False, **options
    )
    run_eval([adapter], context=context, config=settings)


def evaluate_stage(
    out: Path,
    config: DemoConfig,
    adapter: World,
    stage: str,
    captioner: Engine,
    reasoner: Engine,
    *,
    alone: bool,
    progress: bool,
) -> None:
    """A stage's rows (see the module): greedy first (with the captioner alone and `config.modes` when `alone`),
    then sampled, where the world's solver answers beside the reasoner from the same perceptions."""
    modes = ((DIRECT, *config.modes) if alone else ()) + (config.vpo_mode,)
    greedy = context(config, labelled(captioner, stage), reasoner)
    _eval(out, adapter, greedy, config, progress, reasoners=(reasoner,), modes=modes)
    policy = context(config, labelled(captioner, sampled(stage, config)), reasoner, temperature=config.vpo_temperature)
    _eval(out, adapter, policy, config, progress, reasoners=(reasoner, WorldSolver()), modes=(config.vpo_mode,))


def majority_row(
    out: Path, config: DemoConfig, adapter: World, stage: str, reasoner: Engine, *, progress: bool
) -> None:
    """The reasoner voting over `config.majority_k` samples on `stage`'s sampled captions of seed 0, read from the
    perception cache (k reasoner calls per sample: one seed keeps the row's cost that of k seeds)."""
    if config.majority_k < 2:
        return
    cached = CachedCaptioner(sampled(stage, config))  # refuses to be called: the row makes no captioner call
    policy = context(config, cached, reasoner, temperature=config.vpo_temperature)
    vote = MajorityVote(reasoner, config.majority_k)
    _eval(
        out, adapter, policy, config, progress, reasoners=(vote,), modes=(config.vpo_mode,), seeds=(0,), perceive=False
    )
