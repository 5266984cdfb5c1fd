"""`python -m rapid_agent`: `run` answers one question about one image; `demo` runs the offline demo.

Thin by design: parse arguments, build a `RapidContext`, call the library.
"""

from __future__ import annotations

import argparse
import json
import sys

from rapid_agent.backends import BackendUnavailableError, GenerationConfig
from rapid_agent.config import DEFAULT_CAPTIONER, DEFAULT_REASONER, RapidContext
from rapid_agent.perception import DEFAULT_MODE, MODES


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="image path (or data URL)")
    parser.add_argument("--question", required=True, help="the question about the image")
    parser.add_argument("--captioner", default=DEFAULT_CAPTIONER, help="captioner spec (default: %(default)s)")
    parser.add_argument("--reasoner", default=DEFAULT_REASONER, help="reasoner spec (default: %(default)s)")
    parser.add_argument("--mode", default=DEFAULT_MODE, choices=MODES, help="perception mode (default: %(default)s)")
    parser.add_argument("--answer", help="gold answer: report whether the reasoner got it right")
    parser.add_argument("--choices", nargs="*", default=[], help="multiple-choice options, in letter order")
    parser.add_argument("--captioner-max-new-tokens", type=int, default=1024)
    parser.add_argument("--reasoner-max-new-tokens", type=int, default=4096)
    parser.add_argument("--reasoner-temperature", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--trace", help="write an OpenTelemetry trace of the run (JSON lines) to this file")
    parser.add_argument("--json", action="store_true", help="print the final state as JSON")


def run(args: argparse.Namespace) -> int:
    from rapid_agent.graphs import get_graph

    context = RapidContext(
        captioner=args.captioner,
        reasoner=args.reasoner,
        mode=args.mode,
        captioner_gen=GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=args.captioner_max_new_tokens),
        reasoner_gen=GenerationConfig(
            temperature=args.reasoner_temperature, max_new_tokens=args.reasoner_max_new_tokens, seed=args.seed
        ),
    )
    config: dict = {}
    if args.trace:
        from rapid_agent.tracing import OTelCallbackHandler, enable_tracing

        enable_tracing(path=args.trace)
        config["callbacks"] = [OTelCallbackHandler()]
    sample = {"image": args.image, "question": args.question, "answer": args.answer, "choices": args.choices}
    state = get_graph().invoke(sample, context=context, config=config)
    if args.json:
        print(json.dumps({k: v for k, v in state.items() if k != "image"}, indent=2, default=str))
    else:
        print_state(state)
    return 1 if state.get("errors") else 0


def print_state(state: dict) -> None:
    rows = [
        ("captioner", state.get("engines", {}).get("captioner")),
        ("reasoner", state.get("engines", {}).get("reasoner")),
        ("mode", state.get("mode")),
        ("caption", state.get("caption")),
        ("tentative solution", state.get("solution")),
        ("reasoner output", state.get("reasoner_output")),
        ("answer", state.get("prediction")),
    ]
    if state.get("answer") is not None:
        rows.append(("correct", f"{state.get('correct')} (gold {state['answer']}: {state.get('verdict')})"))
    for error in state.get("errors") or []:
        rows.append(("error", error))
    for label, value in rows:
        if value is not None:
            print(f"== {label}\n{str(value).strip()}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rapid_agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(commands.add_parser("run", help="answer one question about one image"))
    from rapid_agent.demo import add_arguments as add_demo_arguments

    add_demo_arguments(commands.add_parser("demo", help="the offline RAPID demo: world, captioner, VPO, report"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(args)
        from rapid_agent.demo import main as demo_main

        return demo_main(args) or 0
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad input: the message names the field
        print(f"error: {exc}", file=sys.stderr)
        return 2
