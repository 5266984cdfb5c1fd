"""`python -m rapid_agent.eval`: the paper's table for real models.

    python -m rapid_agent.eval --benchmark mathvista=/data/MathVista --benchmark mmmu \\
        --captioner hf:Qwen/Qwen2.5-VL-7B-Instruct --reasoner hf:Qwen/Qwen3-8B --reasoner openai:qwen3@http://h:8000/v1 \\
        --mode qcap+sol --limit 100 --out runs/eval
    python -m rapid_agent.eval merge --out runs/eval runs/shard0 runs/shard1     # shards from other machines
    python -m rapid_agent.eval --compare runs/a runs/b                           # runs side by side, b - a paired
    python -m rapid_agent.eval --compare runs/a --rows 1 2                       # rows of one run: row 2 - row 1
    python -m rapid_agent.eval sweep --out runs/eval --baseline hf:Qwen/Qwen3-8B [--benchmark ... --reasoner ...]

Thin by design: parse arguments, build the adapters, a `RapidContext` and an `EvalConfig`, call `run_eval`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from rapid_agent.backends import BackendUnavailableError
from rapid_agent.cli_args import (
    HelpFormatter,
    HfArgumentParser,
    TraceArguments,
    context_from,
    documented,
    parse,
    pipeline_arguments,
)
from rapid_agent.config import DEFAULT_REASONER
from rapid_agent.eval.adapters import PAPER_BENCHMARKS, build_adapter, parse_option
from rapid_agent.perception import DEFAULT_MODE
from rapid_agent.telemetry.setup import setup_tracing

PROG = "python -m rapid_agent.eval"

#: the same options as `run`, reasoner and mode repeatable (each pass of the runner is one of each)
EvalPipelineArguments = pipeline_arguments(many=("reasoner", "mode"))


@documented
@dataclasses.dataclass
class EvalArguments:
    """What to run: benchmarks, the out folder, batching, sharding, answer judging."""

    _argument_group_name = "evaluation"

    out: Path
    """out folder: records, perception cache, tables"""
    benchmark: list[str] | None = dataclasses.field(
        default=None,
        metadata={
            "action": "extend",
            "metavar": "NAME[=PATH_OR_HUB_ID]",
            "help": f"a benchmark ({', '.join(PAPER_BENCHMARKS)}, or generic:LABEL=SOURCE); repeat for several",
        },
    )
    option: list[str] = dataclasses.field(
        default_factory=list, metadata={"action": "extend", "metavar": "NAME.FIELD=VALUE"}
    )
    """adapter option (repeatable)"""
    limit: int | None = None
    """first N samples of each benchmark"""
    batch_size: int = 32
    """samples per graph batch"""
    concurrency: int = 2
    """graph batches in flight"""
    num_shards: int = 1
    """split every benchmark into N shards"""
    shard_index: int = 0
    """the shard this process runs (0-based)"""
    judge: str | None = None
    """engine spec of an LLM answer extractor / judge (off by default)"""
    judge_mode: Literal["extract", "judge"] = "extract"
    """what the judge does: extract the answer from the reasoner's output, or judge it against the gold answer"""
    retry_errors: bool = False
    """run again the samples whose run failed (status error: an engine, a setting, an answer check)"""
    no_progress: bool = False
    """no progress bar"""


@documented
@dataclasses.dataclass
class SweepArguments:
    """The sweep's baseline."""

    baseline: str = dataclasses.field(metadata={"metavar": "REASONER"})
    """the reasoner the others are paired against"""


@documented
@dataclasses.dataclass
class MergeArguments:
    """Where the shards are merged."""

    out: Path
    """the folder to merge into and write the table in"""


@documented
@dataclasses.dataclass
class CompareArguments:
    """Runs (or rows of one run) side by side."""

    compare: list[Path] = dataclasses.field(metadata={"metavar": "DIR"})
    """out folders"""
    rows: list[str] | None = dataclasses.field(default=None, metadata={"metavar": "ROW"})
    """the baseline row, then the rows to pair against it: a row number (the table's # column) or
    FIELD=VALUE[,FIELD=VALUE] over run, captioner, reasoner, mode, settings (a bare VALUE is the reasoner). Default
    with several folders: each row of a later folder against the first folder's row with the same captioner, reasoner
    and mode (or its only row)"""
    out: Path | None = None
    """also write compare.{md,csv,json,png} and differences.csv here"""


def build_parser(*, sweep: bool = False) -> HfArgumentParser:
    """The parser of a run (or, `sweep`, of the reasoner sweep)."""
    types = (EvalArguments, EvalPipelineArguments, TraceArguments)
    parser = HfArgumentParser(
        (SweepArguments, *types) if sweep else types,
        prog=PROG + (" sweep" if sweep else ""),
        description=SWEEP_HELP if sweep else __doc__,
        formatter_class=HelpFormatter,
    )
    if sweep:
        parser.set_defaults(captioner=None)  # the sweep's captioner is the one whose perceptions the out folder holds
    return parser


def build_merge_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        MergeArguments,
        prog=f"{PROG} merge",
        description="Combine the records of shards (other out folders, or shards that wrote into --out itself) into "
        "one table in --out.",
    )
    parser.add_argument("sources", nargs="*", type=Path, help="other out folders (a shard each)")
    return parser


def build_compare_parser() -> HfArgumentParser:
    return HfArgumentParser(
        CompareArguments,
        prog=f"{PROG} --compare",
        description="Runs (or rows of one run) side by side, with paired differences and their 95% intervals.",
    )


SWEEP_HELP = """The reasoner sweep: the reasoners x benchmarks table over one captioner's cached perceptions in --out,
with each reasoner's paired difference against --baseline, written to sweep.{md,csv,json}. Reasoners named with
--reasoner (and --benchmark, with the run options) are run first over the cached perceptions only: the captioner is
never loaded nor called; a sample without a cached perception is left unrun. --captioner and --mode are needed only
when the out folder holds several."""


def _eval_config(args: EvalArguments, **fields: Any) -> Any:
    from rapid_agent.eval.answer_judge import Judge
    from rapid_agent.eval.runner import EvalConfig

    return EvalConfig(
        out=args.out,
        limit=args.limit,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        judge=Judge(args.judge, mode=args.judge_mode) if args.judge else None,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
        **fields,
    )


def run(argv: list[str]) -> int:
    from rapid_agent.eval.runner import run_eval
    from rapid_agent.eval.tables import to_markdown

    parser = build_parser()
    args, pipeline, trace = parse(parser, argv)
    if not args.benchmark:
        parser.error("the following arguments are required: --benchmark")
    setup_tracing(trace.trace, capture_content=trace.trace_content)
    adapters = _adapters(args)
    config = _eval_config(
        args, reasoners=tuple(pipeline.reasoner or (DEFAULT_REASONER,)), modes=tuple(pipeline.mode or (DEFAULT_MODE,))
    )
    # one context for every row: the runner sets the reasoner and mode of each pass
    summary = run_eval(adapters, context=context_from(pipeline, reasoner=None, mode=DEFAULT_MODE), config=config)
    print(to_markdown(summary))
    print(f"records and tables in {args.out}")
    return 0


def _adapters(args: EvalArguments) -> list:
    """The adapters `--benchmark` and `--option` name."""
    options: dict[str, dict[str, str]] = defaultdict(dict)
    for text in args.option:
        label, name, value = parse_option(text)
        options[label][name] = value
    adapters = [build_adapter(text, options) for text in args.benchmark]
    unused = set(options) - {a.label for a in adapters}
    if unused:
        raise ValueError(f"--option names benchmark(s) {sorted(unused)} that no --benchmark gives")
    return adapters


def merge_command(argv: list[str]) -> int:
    from rapid_agent.eval.store import merge, read_results
    from rapid_agent.eval.summary import SUMMARY_FIELDS, summarize
    from rapid_agent.eval.tables import to_markdown, write_all

    args, rest = parse(build_merge_parser(), argv)
    args.out.mkdir(parents=True, exist_ok=True)
    added = merge(args.out, rest.sources)
    summary = summarize(read_results(args.out, keep=SUMMARY_FIELDS))
    write_all(summary, args.out)
    print(to_markdown(summary))
    print(f"merged {added} new records into {args.out}")
    return 0


def compare_command(argv: list[str]) -> int:
    from rapid_agent.eval.compare import compare_markdown, pair_rows, write_comparison
    from rapid_agent.eval.store import read_results
    from rapid_agent.eval.summary import SUMMARY_FIELDS, summarize
    from rapid_agent.eval.tables import compare

    (args,) = parse(build_compare_parser(), argv)
    runs = []
    for folder in args.compare:
        if not folder.is_dir():
            raise ValueError(f"--compare: {str(folder)!r} is not a folder")
        runs.append((folder.name or str(folder), summarize(read_results(folder, keep=SUMMARY_FIELDS))))
    if len({name for name, _ in runs}) < len(runs):  # two folders of one name: tell them apart by path
        runs = [(str(folder), summary) for folder, (_, summary) in zip(args.compare, runs, strict=True)]
    summary, names = compare(runs)
    comparisons = pair_rows(summary, names, args.rows)
    text = compare_markdown(summary, names, comparisons)
    print(text)
    if args.out:
        write_comparison(args.out, summary, names, comparisons, text)
    return 0


def sweep_command(argv: list[str]) -> int:
    from rapid_agent.eval.runner import run_eval
    from rapid_agent.eval.store import PERCEPTION_KEY, PERCEPTIONS, read_records, read_results
    from rapid_agent.eval.summary import SUMMARY_FIELDS
    from rapid_agent.eval.sweep import CachedCaptioner, choose, perceived, sweep

    sweep_args, args, pipeline, trace = parse(build_parser(sweep=True), argv)
    if not args.out.is_dir():
        raise ValueError(f"--out: {str(args.out)!r} is not a folder (the sweep reads a run's records)")
    if len(pipeline.mode or ()) > 1:
        raise ValueError(f"--mode: a sweep is over one perception mode, got {pipeline.mode}")
    mode = pipeline.mode[0] if pipeline.mode else None
    captioner = pipeline.captioner
    if pipeline.reasoner:
        if not args.benchmark:
            raise ValueError("--reasoner: name the --benchmark(s) to run it on")
        setup_tracing(trace.trace, capture_content=trace.trace_content)
        cached = read_records(args.out, PERCEPTIONS, PERCEPTION_KEY, keep=("status",)).values()
        captioner, modes = perceived(cached, captioner)
        mode = choose(mode, modes, "mode")
        adapters = _adapters(args)
        # the point of a sweep: no captioner call, ever
        config = _eval_config(args, reasoners=tuple(pipeline.reasoner), modes=(mode,), perceive=False)
        context = context_from(pipeline, reasoner=None, mode=DEFAULT_MODE, captioner=CachedCaptioner(captioner))
        run_eval(adapters, context=context, config=config)
    elif args.benchmark:
        raise ValueError("--benchmark: name the --reasoner(s) to run on it (without any, the sweep only reads --out)")
    result = sweep(
        read_results(args.out, keep=SUMMARY_FIELDS), baseline=sweep_args.baseline, captioner=captioner, mode=mode
    )
    result.write(args.out)
    print(result.markdown())
    print(f"written to {args.out}/sweep.{{md,csv,json}}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["merge"]:
            return merge_command(argv[1:])
        if argv[:1] == ["sweep"]:
            return sweep_command(argv[1:])
        if "--compare" in argv:
            return compare_command(argv)
        return run(argv[1:] if argv[:1] == ["run"] else argv)
    except (BackendUnavailableError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
