"""Run benchmarks through the RAPID graph: perception once per sample and mode, cached; every reasoner reads it.

    summary = run_eval([build_adapter("mathvista=/data/MathVista")], context=RapidContext(captioner=..., mode=...),
                       config=EvalConfig(out="runs/eval", reasoners=("hf:Qwen/Qwen3-8B",), modes=("qcap+sol",)))

How this departs from a plain loop over samples:
- Two passes through the one compiled graph per batch. The perception pass runs it with `reasoner=None` (it stops
  after perceive) and appends each captioner output to `perceptions*.jsonl`. The reasoning pass feeds each sample its
  cached `captioner_output`, so the graph skips perceive and goes reason -> score with `captioner=None`: adding or
  swapping a reasoner later makes no captioner call at all.
- Resumable at the sample: a record is appended, whole, as soon as its batch finishes; a re-run over the same out
  folder skips every key already written, so a killed run loses only the batches in flight.
- Sharded: `num_shards`/`shard_index` split every benchmark by a hash of its sample ids (after `limit`), each shard
  writes its own files, and the table is counted over all of them.
- Batches run `concurrency` at a time so that both engines stay busy; the engines' micro-batchers merge them.
- Engines load before any work: a spec that cannot load (a wrong path, an unknown option) ends the run at once with a
  message naming its role and spec, and writes nothing, instead of failing every sample one by one.
- `perceive=False` (the reasoner sweep) reasons over cached perceptions only: the captioner is never loaded nor
  called, the cached perceptions are used whatever captioner options this run was given (the cache's own settings),
  and a sample with none is left unrun and counted in a warning.
- `seeds` repeat every sample once per sampling seed, which goes into the reasoner's `GenerationConfig` and, when the
  captioner samples (temperature > 0), into the captioner's: each seed is one draw of the whole pipeline. A greedy
  captioner's perception is cached once (seed None) and read by every seed. Records carry their seed; a row's score
  is the mean over its seeds (`summary`).
- Mode `direct` (the captioner answering alone) has no reasoner: its row's reasoner is `-`, one row whatever
  `reasoners` lists, and the reasoning pass only scores the cached captioner output through the graph.

What a record's `status` says: `scored` (a verdict), `skipped` (the sample's own data is bad: the adapter refused
the row, or the graph refused its question, choices, gold or images as `input: ...`; it stays out of the table and
is never run again) or `error` (the run failed: an engine, a setting, a bug, an answer check that could not run; no
verdict, counted apart, and run again by `retry_errors`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rapid_agent.api import solve_batch
from rapid_agent.backends import GenerationConfig, load_engine
from rapid_agent.backends.base import redact
from rapid_agent.config import RapidContext
from rapid_agent.eval.adapters import Adapter, EvalSample
from rapid_agent.eval.answer_judge import Judge
from rapid_agent.eval.scoring import safe_score, undecided
from rapid_agent.eval.store import (
    PERCEPTION_KEY,
    PERCEPTIONS,
    RESULT_KEY,
    RESULTS,
    JsonlWriter,
    read_records,
    read_results,
    record_key,
    shard_file,
)
from rapid_agent.eval.summary import SUMMARY_FIELDS, Summary, summarize
from rapid_agent.hashing import config_hash
from rapid_agent.perception import DIRECT, answer_key, check_mode
from rapid_agent.tracing import eval_batch

NO_CAPTIONER = "-"
#: the reasoner of a `direct` row: none is called
NO_REASONER = "-"
#: the captioner's prompts (its settings); the others are the reasoner's
PERCEPTION_PROMPTS = ("caption", "query_caption", "solution", "caption_and_solution")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """How an evaluation runs; the engines and mode settings come from the `RapidContext`."""

    out: Path = field(metadata={"help": "out folder: per-sample JSONL, perception cache and tables"})
    reasoners: tuple[Any, ...] = field(default=(), metadata={"help": "reasoner specs (or Engines); one row each"})
    modes: tuple[str, ...] = field(default=("qcap+sol",), metadata={"help": "perception modes; one row each"})
    limit: int | None = field(default=None, metadata={"help": "first N samples of each benchmark"})
    batch_size: int = field(default=32, metadata={"help": "samples per graph batch"})
    concurrency: int = field(default=2, metadata={"help": "graph batches in flight at once"})
    num_shards: int = field(default=1, metadata={"help": "split every benchmark into this many shards"})
    shard_index: int = field(default=0, metadata={"help": "which shard this process runs"})
    judge: Judge | None = field(default=None, metadata={"help": "optional LLM answer extractor / judge"})
    retry_errors: bool = field(default=False, metadata={"help": "run again the samples whose run failed (errors)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    tables: bool = field(default=True, metadata={"help": "write summary.{md,csv,json,png} when done"})
    seeds: tuple[int | None, ...] = field(
        default=(None,),
        metadata={
            "help": "sampling seeds: every sample runs once per seed (the reasoner's seed, and a sampling captioner's); "
            "a row's score is the mean over them. None: the context's own seed"
        },
    )
    perceive: bool = field(
        default=True,
        metadata={
            "help": "call the captioner where no perception is cached; False: reason over cached perceptions only "
            "(never a captioner call; samples without one are left unrun)"
        },
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "reasoners", tuple(self.reasoners))
        object.__setattr__(self, "modes", tuple(check_mode(m) for m in self.modes))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.reasoners and any(m != DIRECT for m in self.modes):
            raise ValueError("reasoners: name at least one reasoner")
        if not self.seeds or len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds: name each seed once, at least one (None: the context's), got {self.seeds!r}")
        if not self.modes:
            raise ValueError("modes: name at least one perception mode")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit!r}")
        for name in ("batch_size", "concurrency", "num_shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index must be in [0, {self.num_shards}), got {self.shard_index!r}")


def engine_label(engine: Any) -> str:
    """The name a row shows for an engine: its spec string."""
    if engine is None:
        return NO_CAPTIONER
    if isinstance(engine, str):
        return engine
    return str(getattr(engine, "spec", None) or type(engine).__name__)


def fingerprint(payload: Any) -> str:
    return config_hash(payload, length=10)


def in_shard(sample_id: str, benchmark: str, num_shards: int, shard_index: int) -> bool:
    """Deterministic: the same sample lands in the same shard on every machine and run."""
    digest = hashlib.sha1(f"{benchmark}\0{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards == shard_index


def select(samples: Sequence[EvalSample], config: EvalConfig) -> list[EvalSample]:
    """`limit` first (so shards split the same samples an unsharded run takes), then this shard's share."""
    chosen = list(samples[: config.limit] if config.limit else samples)
    return [s for s in chosen if in_shard(s.id, s.benchmark, config.num_shards, config.shard_index)]


class _Run:
    """One evaluation: the stores, the settings fingerprints, and the two graph passes per batch."""

    def __init__(self, context: RapidContext, config: EvalConfig) -> None:
        # streaming sends requests one by one; an evaluation wants them batched
        self.context = context.replace(stream=False) if context.stream else context
        self.config = config
        self.captioner = engine_label(context.captioner)
        self.lock = threading.Lock()
        # what changes an output is part of its key, so a changed setting starts new records instead of mixing in
        prompts = dataclasses.asdict(context.prompts)
        self.perceptions = {
            k: r
            for k, r in read_records(config.out, PERCEPTIONS, PERCEPTION_KEY).items()
            if not self._retry(r.get("status"))
        }
        self.perception_settings = {}
        for mode in config.modes:
            asked = ("direct_answer",) if mode == DIRECT else PERCEPTION_PROMPTS  # the captioner's prompt(s)
            own = fingerprint(
                {
                    "captioner_gen": dataclasses.asdict(context.captioner_gen),
                    "prompts": {k: prompts[k] for k in asked},
                    "max_pixels": context.max_pixels,
                }
            )
            self.perception_settings[mode] = own if config.perceive else self._cached_settings(mode, own)
        judge = config.judge
        self.reason_settings = {
            mode: fingerprint(
                {
                    "perception": None if mode == "none" else self.perception_settings[mode],
                    "reasoner_gen": dataclasses.asdict(context.reasoner_gen),
                    "prompts": {k: v for k, v in prompts.items() if k not in PERCEPTION_PROMPTS},
                    "strict_answers": context.strict_answers,
                    "judge": None if judge is None else [judge.spec, judge.mode, dataclasses.asdict(judge.gen)],
                }
            )
            if mode != DIRECT  # no reasoner: its settings and the judge (which reads reasoner outputs) play no part
            else fingerprint({"perception": self.perception_settings[mode], "strict_answers": context.strict_answers})
            for mode in config.modes
        }
        self.done = {
            k
            for k, r in read_records(config.out, RESULTS, RESULT_KEY, keep=("status",)).items()
            if not self._retry(r.get("status"))
        }
        self.uncached = 0  # samples left unrun for want of a cached perception (perceive=False)
        self.perception_writer: JsonlWriter | None = None
        self.result_writer: JsonlWriter | None = None
        self.bar: tqdm | None = None
        self.tally = [0, 0]  # correct, scored in this run: the progress bar's running accuracy

    def _cached_settings(self, mode: str, own: str) -> str:
        """With `perceive=False`, the perception settings the cache holds for this captioner in `mode`: the captioner
        is not called, so the options this run was given for it do not matter. `own`, when the cache has them too."""
        found = {
            r["settings"] for r in self.perceptions.values() if r["captioner"] == self.captioner and r["mode"] == mode
        }
        if own in found or not found:
            return own
        if len(found) == 1:
            return found.pop()
        raise ValueError(
            f"the perception cache in {self.config.out} holds {len(found)} settings for captioner {self.captioner!r} "
            f"({sorted(found)}); give the captioner options of the run whose perceptions to use"
        )

    def cached(self, sample: EvalSample, mode: str, seed: int | None) -> bool:
        """Whether this sample can run without a captioner call: skipped, text-only, or its perception cached."""
        return bool(sample.skip) or mode == "none" or self.perception_key(sample, mode, seed) in self.perceptions

    def open(self) -> None:
        """Open (and lock) this shard's files; only once the engines have loaded, so a failed start writes nothing."""
        shard = (self.config.shard_index, self.config.num_shards)
        self.perception_writer = JsonlWriter(shard_file(self.config.out, PERCEPTIONS, *shard))
        self.result_writer = JsonlWriter(shard_file(self.config.out, RESULTS, *shard))

    def _retry(self, status: str | None) -> bool:
        return self.config.retry_errors and status == "error"

    def close(self) -> None:
        for writer in (self.perception_writer, self.result_writer):
            if writer is not None:
                writer.close()

    def load_engines(self, jobs: Sequence[tuple[Adapter, str, list[EvalSample]]]) -> None:
        """Load every engine the pending work needs, before any of it starts: the captioner when some sample still
        needs a perception, each reasoner with samples to run, the judge. A failure raises naming role and spec."""
        needed: list[tuple[str, Any, dict]] = []
        seeds = self.config.seeds
        perceive = any(
            mode != "none" and self.perception_key(s, mode, seed) not in self.perceptions
            for _, mode, samples in jobs
            for s in samples
            for seed in seeds
            if s.images
            and not s.skip
            and any(self.pending([s], mode, label, seed) for _, label in self.reasoners(mode))
        )
        if perceive and self.config.perceive:
            needed.append(("captioner", self.context.captioner, dict(self.context.captioner_options)))
        for reasoner in self.config.reasoners:
            label = engine_label(reasoner)
            if any(
                self.pending(samples, mode, label, seed)
                for _, mode, samples in jobs
                for seed in seeds
                if mode != DIRECT
            ):
                needed.append(("reasoner", reasoner, dict(self.context.reasoner_options)))
        if self.config.judge is not None and needed:
            needed.append(("judge", self.config.judge.engine, {}))
        for role, spec, options in needed:
            if spec is None and role == "captioner":
                raise ValueError(f"{role}: none given, and a perception mode in {list(self.config.modes)} needs one")
            try:
                # the same arguments the graph's nodes (and the judge) load with: they find these in the cache
                load_engine(spec, "captioner" if role == "captioner" else "reasoner", **options)
            except Exception as exc:
                message = " ".join(str(exc).split()) or type(exc).__name__
                raise RuntimeError(redact(f"{role} {engine_label(spec)!r} could not be loaded: {message}")) from exc

    # keys ----------------------------------------------------------------------------------------------------
    def reasoners(self, mode: str) -> list[tuple[Any, str]]:
        """(engine, label) of each reasoner that runs in `mode`: none in mode `direct`."""
        if mode == DIRECT:
            return [(None, NO_REASONER)]
        return [(r, engine_label(r)) for r in self.config.reasoners]

    def result_key(self, sample: EvalSample, mode: str, reasoner: str, seed: int | None) -> tuple:
        captioner = NO_CAPTIONER if mode == "none" else self.captioner
        return (sample.benchmark, sample.id, mode, captioner, reasoner, self.reason_settings[mode], seed)

    def perception_seed(self, seed: int | None) -> int | None:
        """The seed a perception is drawn with: none for a greedy captioner, whose one output serves every seed."""
        return None if self.context.captioner_gen.greedy else seed

    def perception_key(self, sample: EvalSample, mode: str, seed: int | None) -> tuple:
        settings = self.perception_settings[mode]
        return (sample.benchmark, sample.id, mode, self.captioner, settings, self.perception_seed(seed))

    def pending(self, samples: Sequence[EvalSample], mode: str, reasoner: str, seed: int | None) -> list[EvalSample]:
        return [s for s in samples if self.result_key(s, mode, reasoner, seed) not in self.done]

    # the two passes ------------------------------------------------------------------------------------------
    def run_batch(self, adapter: Adapter, mode: str, samples: list[EvalSample]) -> None:
        for seed in self.config.seeds:
            self.run_seed(adapter, mode, seed, samples)

    def run_seed(self, adapter: Adapter, mode: str, seed: int | None, samples: list[EvalSample]) -> None:
        reasoners = self.reasoners(mode)
        todo = [s for s in samples if any(self.pending([s], mode, label, seed) for _, label in reasoners)]
        if not self.config.perceive:  # reason over cached perceptions only; the others wait for a captioner
            runnable = [s for s in todo if self.cached(s, mode, seed)]
            with self.lock:
                self.uncached += len(todo) - len(runnable)
            todo = runnable
        if not todo:
            return
        perceptions = {} if mode == "none" else self.perceive(mode, seed, [s for s in todo if not s.skip])
        for reasoner, label in reasoners:
            pending = self.pending(todo, mode, label, seed)
            records = self.reason(adapter, mode, seed, (reasoner, label), pending, perceptions)
            self.result_writer.append(records)
            with self.lock:
                self.done.update(record_key(r, RESULT_KEY) for r in records)
                scored = [r for r in records if r["status"] == "scored"]
                self.tally[0] += sum(bool(r.get("correct")) for r in scored)
                self.tally[1] += len(scored)
                if self.bar is not None:
                    self.bar.update(len(records))
                    if self.tally[1]:
                        self.bar.set_postfix(acc=f"{100 * self.tally[0] / self.tally[1]:.1f}%", refresh=False)

    def perceive(self, mode: str, seed: int | None, samples: list[EvalSample]) -> dict[str, dict]:
        """Cached captioner outputs for `samples`, running the captioner (through the graph) only where missing."""
        found: dict[str, dict] = {}
        need: list[EvalSample] = []
        for sample in samples:
            cached = self.perceptions.get(self.perception_key(sample, mode, seed))
            if cached is not None:
                found[sample.id] = cached
            else:
                need.append(sample)
        if not need:
            return found
        new: list[dict] = []
        # a sample without images is skipped here; one whose images do not decode is refused by the graph itself
        # (`input: ...`), which the loop below records as a skip: images are decoded once, inside the graph. Any
        # other failure (`error: ...`, `captioner: ...`) is an error: no verdict on the sample, run again on retry
        runnable = [s for s in need if s.images]
        new += [
            self._perception(s, mode, seed, status="skipped", skip_reason="no image") for s in need if not s.images
        ]
        if runnable:
            inputs = [
                {"id": s.id, "question": s.question, "images": list(s.images), "choices": list(s.choices)}
                for s in runnable
            ]
            gen = _seeded(self.context.captioner_gen, self.perception_seed(seed))
            results = solve_batch(inputs, context=self.context.replace(mode=mode, reasoner=None, captioner_gen=gen))
            for sample, result in zip(runnable, results, strict=True):
                errors = list(result.get("errors") or [])
                if not errors and result.get("captioner_output") is None:
                    errors = ["captioner: no output"]
                bad_input = _bad_input(errors)
                if bad_input:
                    new.append(self._perception(sample, mode, seed, status="skipped", skip_reason=bad_input))
                    continue
                new.append(
                    self._perception(
                        sample,
                        mode,
                        seed,
                        status="error" if errors else "ok",
                        captioner_output=result.get("captioner_output"),
                        caption=result.get("caption"),
                        solution=result.get("solution"),
                        metrics=result.get("metrics") or {},
                        errors=errors,
                    )
                )
        self.perception_writer.append(new)
        with self.lock:
            for record in new:
                self.perceptions[record_key(record, PERCEPTION_KEY)] = record
        return found | {r["sample_id"]: r for r in new}

    def _perception(self, sample: EvalSample, mode: str, seed: int | None, **values: Any) -> dict:
        keys = dict(zip(PERCEPTION_KEY, self.perception_key(sample, mode, seed), strict=True))
        return {**keys, **values}

    def reason(
        self,
        adapter: Adapter,
        mode: str,
        seed: int | None,
        reasoner: tuple[Any, str],
        samples: list[EvalSample],
        perceptions: dict[str, dict],
    ) -> list[dict]:
        """The reasoning pass: each sample with its cached perception through the graph (`reasoner`: engine and
        label), scored by its benchmark's rules."""
        engine, label = reasoner
        records: list[dict] = []
        runnable: list[tuple[EvalSample, dict | None]] = []
        for sample in samples:
            base = self._base(adapter, sample, mode, label, seed)
            perception = perceptions.get(sample.id)
            if sample.skip:
                records.append({**base, "status": "skipped", "skip_reason": sample.skip})
            elif perception is not None and perception["status"] == "skipped":
                records.append({**base, "status": "skipped", "skip_reason": perception["skip_reason"]})
            elif perception is not None and perception["status"] == "error":
                records.append({**base, **_perception_fields(perception), "status": "error", "correct": None})
            else:
                runnable.append((sample, perception))
        if not runnable:
            return records
        inputs = []
        for sample, perception in runnable:
            item = {
                "id": sample.id,
                "question": sample.question,
                "answer": sample.answer,
                "choices": list(sample.choices),
            }
            if perception is not None:
                item["captioner_output"] = perception["captioner_output"]
            inputs.append(item)
        context = self.context.replace(
            mode=mode, reasoner=engine, captioner=None, reasoner_gen=_seeded(self.context.reasoner_gen, seed)
        )
        attributes = {"rapid.benchmark": adapter.label, "rapid.mode": mode, "rapid.reasoner": label}
        with eval_batch(len(inputs), attributes) as batch:  # a span over the batch's graph runs, and its metrics
            results = solve_batch(inputs, context=context)
            batch.results(results)
        scored = []
        for (sample, perception), result in zip(runnable, results, strict=True):
            record = {**self._base(adapter, sample, mode, label, seed), **_perception_fields(perception)}
            bad_input = _bad_input(result.get("errors") or [])
            if bad_input:  # the graph refused the sample itself (question too long, bad choices): bad data
                records.append({**record, "status": "skipped", "skip_reason": bad_input})
                continue
            record.update(_result_fields(result, mode))
            _merge_usage(record, result)
            if record["status"] == "scored":
                score = safe_score(adapter.score, record)
                record.update(
                    correct=score.correct, prediction=score.prediction, verdict=score.reason, scored_by="rules"
                )
                if score.correct is None:  # the answer check could not run: an error to retry, not a wrong answer
                    undecided(record)
                else:
                    scored.append(record)
            records.append(record)
        if self.config.judge is not None:
            self.config.judge.apply(scored, adapter.score)
        return records

    def _base(self, adapter: Adapter, sample: EvalSample, mode: str, label: str, seed: int | None) -> dict:
        keys = dict(zip(RESULT_KEY, self.result_key(sample, mode, label, seed), strict=True))
        return {
            **keys,
            "adapter": adapter.name,
            "question": sample.question,
            "answer": sample.answer,
            "choices": list(sample.choices),
            "fields": sample.fields,
            "images": len(sample.images),
        }


def _seeded(gen: GenerationConfig, seed: int | None) -> GenerationConfig:
    """`gen` with `seed`, or as it is for seed None (the context's own seed)."""
    return gen if seed is None else dataclasses.replace(gen, seed=seed)


def _bad_input(errors: Sequence[str]) -> str | None:
    """The graph's complaint about a sample's own data (`input: <field>: <why>`, see `rapid_agent.api`), which
    makes it a skip rather than an error. Every other failure is an error."""
    return next((e for e in errors if e.startswith("input:")), None)


def _perception_fields(perception: dict | None) -> dict:
    if perception is None:
        return {}
    metrics = perception.get("metrics") or {}
    return {
        "caption": perception.get("caption"),
        "solution": perception.get("solution"),
        "errors": list(perception.get("errors") or []),
        "latency_s": {"captioner": metrics.get("captioner_latency_s")},
        "tokens": {
            "captioner_prompt": metrics.get("captioner_prompt_tokens"),
            "captioner_completion": metrics.get("captioner_completion_tokens"),
        },
    }


def _result_fields(result: dict, mode: str) -> dict:
    """What a record keeps of the graph's final state for one sample; in mode `direct` the captioner's output, which
    is the answer checked."""
    errors = list(result.get("errors") or [])
    key = answer_key(mode)
    if not errors and result.get(key) is None:
        errors = [f"{key.split('_')[0]}: no output"]
    out = {
        "status": "error" if errors else "scored",
        "reasoner_output": result.get("reasoner_output"),
        "graph_prediction": result.get("prediction"),
        "graph_correct": result.get("correct"),
        "graph_verdict": result.get("verdict"),
        "finish_reason": result.get("reasoner_finish_reason"),
        "errors": errors,
        "correct": None,
        "prediction": None,
        "verdict": errors[0] if errors else None,
    }
    if result.get("caption") is not None or result.get("solution") is not None:
        out.update(caption=result.get("caption"), solution=result.get("solution"))
    if mode == DIRECT:
        out["captioner_output"] = result.get("captioner_output")
    return out


def _merge_usage(record: dict, result: dict) -> None:
    metrics = result.get("metrics") or {}
    record.setdefault("latency_s", {})["reasoner"] = metrics.get("reasoner_latency_s")
    tokens = record.setdefault("tokens", {})
    tokens["reasoner_prompt"] = metrics.get("reasoner_prompt_tokens")
    tokens["reasoner_completion"] = metrics.get("reasoner_completion_tokens")


def run_eval(benchmarks: Sequence[Adapter], *, context: RapidContext, config: EvalConfig) -> Summary:
    """Evaluate every benchmark for every reasoner and mode, appending records to `config.out`; return the table
    counted over every record there (earlier runs and other shards included)."""
    run = _Run(context, config)
    try:
        jobs = []
        total = 0
        for adapter in benchmarks:
            samples = select(adapter.load(), config)
            for mode in config.modes:
                for seed in config.seeds:
                    runnable = samples if config.perceive else [s for s in samples if run.cached(s, mode, seed)]
                    total += sum(len(run.pending(runnable, mode, label, seed)) for _, label in run.reasoners(mode))
                jobs += [
                    (adapter, mode, samples[i : i + config.batch_size])
                    for i in range(0, len(samples), config.batch_size)
                ]
        run.load_engines(jobs)
        run.open()
        with tqdm(total=total, desc="eval", unit="sample", disable=not config.progress, smoothing=0.1) as bar:
            run.bar = bar
            with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
                for future in [pool.submit(run.run_batch, *job) for job in jobs]:
                    future.result()
    finally:
        run.close()
    if run.uncached:
        logger.warning(
            "%d sample(s) have no cached perception of captioner %r in %s and were not run (this run never calls the "
            "captioner; run them once with it to cache their perceptions)",
            run.uncached,
            run.captioner,
            config.out,
        )
    # columns in the paper's order, whatever order they were named in
    summary = summarize(read_results(config.out, keep=SUMMARY_FIELDS))
    if config.tables:
        from rapid_agent.eval.tables import write_all

        write_all(summary, config.out)
    return summary
