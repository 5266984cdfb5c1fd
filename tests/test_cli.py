"""`python -m rapid_agent run` on real images with real (tiny) models, and its error messages."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from rapid_agent import RapidContext, solve_batch
from rapid_agent.backends import GenerationConfig, load_engine
from rapid_agent.backends.batching import get_batcher


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "shapes.png"
    image = Image.new("RGB", (112, 112), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, 24, 24), fill="red")
    draw.rectangle((32, 32, 52, 52), fill="blue")
    image.save(path)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rapid_agent", "run", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_run_with_local_models_prints_every_part(picture, tiny_captioner_dir, tiny_reasoner_dir):
    common = ["--image", str(picture), "--question", "How many shapes?", "--answer", "2"]
    common += ["--captioner", f"hf:{tiny_captioner_dir}", "--captioner-max-new-tokens", "8"]
    common += ["--reasoner-max-new-tokens", "8", "--reasoner-temperature", "0"]
    out = run_cli(*common, "--reasoner", f"hf:{tiny_reasoner_dir}", "--json")
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    assert state["engines"] == {"captioner": f"hf:{tiny_captioner_dir}", "reasoner": f"hf:{tiny_reasoner_dir}"}
    assert state["captioner_output"] and state["reasoner_output"] is not None
    # the tiny random reasoner, greedy, writes no answer: the score node says so, and the run stands (exit 0)
    assert (state["answer"], state["prediction"], state["correct"]) == ("2", None, False)
    assert state["verdict"] == "no \\boxed{} answer and no final answer found in the output"
    text = run_cli(*common, "--reasoner", f"hf:{tiny_reasoner_dir}", "--mode", "cap")
    assert text.returncode == 0, text.stderr
    assert "== caption" in text.stdout and "== correct" in text.stdout and "== tentative solution" not in text.stdout


def test_unfetchable_hub_model_says_so_and_suggests_a_path(picture, tiny_captioner_dir):
    out = run_cli(
        "--image",
        str(picture),
        "--question",
        "q",
        "--captioner",
        f"hf:{tiny_captioner_dir}",
        "--reasoner",
        "hf:Qwen/Qwen3-8B",
    )
    assert out.returncode == 2
    assert "could not be fetched from the hub" in out.stderr and "hf:/path/to/model" in out.stderr


def test_bad_inputs_exit_with_the_field_named(tmp_path, tiny_captioner_dir):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out = run_cli("--image", str(empty), "--question", "q", "--captioner", f"hf:{tiny_captioner_dir}")
    assert out.returncode == 2 and "image" in out.stderr and "empty" in out.stderr
    out = run_cli("--image", str(empty), "--question", "q", "--reasoner", "ollama:llama3")
    assert out.returncode == 2 and "unknown engine provider 'ollama'" in out.stderr


def test_swapping_the_reasoner_spec_changes_only_the_reasoner(picture, tiny_captioner_dir, tmp_path):
    from rapid_agent.models import build_tiny_causal_lm

    first = build_tiny_causal_lm(tmp_path / "r1", seed=1)
    second = build_tiny_causal_lm(tmp_path / "r2", arch="qwen3", seed=2)
    sample = {"image": str(picture), "question": "How many shapes?", "answer": "2"}
    context = RapidContext(
        captioner=f"hf:{tiny_captioner_dir}",
        reasoner=f"hf:{first}",
        captioner_gen=GenerationConfig(temperature=0.0, max_new_tokens=8),
        reasoner_gen=GenerationConfig(temperature=0.0, max_new_tokens=8),
    )
    a = solve_batch([sample], context=context)[0]
    b = solve_batch([sample], context=context.replace(reasoner=f"hf:{second}"))[0]
    assert a["engines"]["reasoner"] == f"hf:{first}" and b["engines"]["reasoner"] == f"hf:{second}"
    assert a["captioner_output"] == b["captioner_output"]  # same captioner, greedy
    assert type(load_engine(f"hf:{second}", "reasoner").model).__name__.startswith("Qwen3")


def test_batch_of_32_real_images_makes_few_engine_calls(tiny_captioner_dir, tiny_reasoner_dir):
    from rapid_agent.world import generate_items

    captioner = load_engine(f"hf:{tiny_captioner_dir}", "captioner", max_batch_size=32)
    reasoner = load_engine(f"hf:{tiny_reasoner_dir}", "reasoner", max_batch_size=32)
    context = RapidContext(
        captioner=captioner,
        reasoner=reasoner,
        captioner_gen=GenerationConfig(temperature=0.0, max_new_tokens=6),
        reasoner_gen=GenerationConfig(temperature=0.0, max_new_tokens=6),
    )
    items = generate_items(32, seed=3)
    out = solve_batch([{k: it[k] for k in ("image", "question", "answer")} for it in items], context=context)
    assert len(out) == 32 and all(not o["errors"] and o["correct"] in (True, False) for o in out)
    assert len(get_batcher(captioner).batch_sizes) <= 3 and sum(get_batcher(captioner).batch_sizes) == 32
    assert len(get_batcher(reasoner).batch_sizes) <= 3 and sum(get_batcher(reasoner).batch_sizes) == 32


def test_an_unwritable_trace_path_is_a_clear_error_before_any_model_loads(picture, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = run_cli("--image", str(picture), "--question", "q", "--trace", str(blocker / "sub" / "trace.jsonl"))
    assert out.returncode == 2 and "--trace: cannot write a trace" in out.stderr
    assert "Traceback" not in out.stderr and "Loading" not in out.stderr


def test_models_text_streams_to_the_terminal_and_options_come_from_the_dataclasses(
    picture, tiny_captioner_dir, tiny_reasoner_dir
):
    from rapid_agent.cli import build_run_parser
    from rapid_agent.cli_args import context_from, parse

    _, pipeline, _ = parse(
        build_run_parser(),
        [
            "--image",
            "x.png",
            "--question",
            "q",
            "--reasoner-top-p",
            "0.5",
            "--reasoner-option",
            "timeout_s=30",
            "--reasoner-option",
            'extra_body={"top_k": 20}',
            "--captioner-option",
            "device_map=auto",
            "--strict-answers",
        ],
    )
    context = context_from(pipeline)
    assert context.reasoner_gen.top_p == 0.5 and context.reasoner_gen.max_new_tokens == 4096
    assert context.reasoner_options == {"timeout_s": 30, "extra_body": {"top_k": 20}}
    assert context.captioner_options == {"device_map": "auto"} and context.strict_answers is True
    out = run_cli(
        "--image",
        str(picture),
        "--question",
        "How many shapes?",
        "--captioner",
        f"hf:{tiny_captioner_dir}",
        "--reasoner",
        f"hf:{tiny_reasoner_dir}",
        "--captioner-max-new-tokens",
        "6",
        "--reasoner-max-new-tokens",
        "6",
    )
    assert out.returncode == 0, out.stderr
    assert "-- captioner (streaming) --" in out.stderr and "-- reasoner (streaming) --" in out.stderr
    out = run_cli(
        "--image",
        str(picture),
        "--question",
        "q",
        "--reasoner-option",
        "no_such_option=1",
        "--captioner",
        f"hf:{tiny_captioner_dir}",
        "--reasoner",
        f"hf:{tiny_reasoner_dir}",
    )
    assert out.returncode == 2 and "unknown 'hf' engine option(s) ['no_such_option']" in out.stderr


# -- one way to build a command line ----------------------------------------------------------------------------


def _help(parser, flag: str) -> str:
    return next(a.help for a in parser._actions if flag in a.option_strings)


def test_a_flags_help_is_its_fields_docstring():
    import dataclasses

    from rapid_agent.cli import RunArguments, build_run_parser
    from rapid_agent.cli_args import HfArgumentParser, attribute_docs, documented
    from rapid_agent.eval.__main__ import CompareArguments, build_compare_parser

    @documented
    @dataclasses.dataclass
    class Example:
        depth: int = 3
        """how deep to look,
        in levels"""
        width: int = dataclasses.field(default=1, metadata={"help": "kept as given"})
        """not this one"""

    parser = HfArgumentParser(Example)
    assert _help(parser, "--depth") == "how deep to look, in levels" and _help(parser, "--width") == "kept as given"
    assert _help(build_run_parser(), "--question") == attribute_docs(RunArguments)["question"]
    assert _help(build_run_parser(), "--question") == "the question about the image"
    assert _help(build_compare_parser(), "--rows") == attribute_docs(CompareArguments)["rows"]
    # derived options keep their config field's help
    assert _help(build_run_parser(), "--reasoner-top-p").startswith("reasoner: nucleus sampling")


def test_an_unknown_or_mistyped_flag_exits_2_naming_it(capsys):
    from rapid_agent.cli import main

    with pytest.raises(SystemExit) as info:
        main(["run", "--image", "x.png", "--question", "q", "--reasoner-temprature", "0"])
    assert info.value.code == 2 and "unrecognized arguments: --reasoner-temprature 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["run", "--image", "x.png", "--question", "q", "--reasoner-temperature", "hot"])
    assert info.value.code == 2
    assert (
        "argument --reasoner_temperature/--reasoner-temperature: invalid float value: 'hot'" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as info:
        main(["serve", "--prot", "1", "--port", "80"])  # neither a flag nor an abbreviation of one
    assert info.value.code == 2 and "--prot" in capsys.readouterr().err
    # a value the config refuses: exit 2, the field named
    assert main(["run", "--image", "x.png", "--question", "q", "--reasoner-top-p", "2"]) == 2
    assert "top_p must be in (0, 1], got 2.0" in capsys.readouterr().err
    assert main(["run", "--image", "x.png", "--question", "q", "--reasoner-option", "no-equals-sign"]) == 2
    assert "--reasoner-option: engine options look like key=value, got 'no-equals-sign'" in capsys.readouterr().err


def test_eval_and_rl_refuse_a_typo_with_exit_2_naming_it(tmp_path, capsys):
    from pathlib import Path

    from rapid_agent.eval.__main__ import main as eval_main
    from rapid_agent.rl.__main__ import cli as rl_cli

    with pytest.raises(SystemExit) as info:
        eval_main(["--benchmark", "mathvista", "--out", str(tmp_path), "--limt", "3"])
    assert info.value.code == 2 and "unrecognized arguments: --limt 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        eval_main(["--out", str(tmp_path)])
    assert info.value.code == 2 and "required: --benchmark" in capsys.readouterr().err
    recipe = Path(__file__).resolve().parents[1] / "rl" / "recipes" / "tiny_cpu_vpo.yaml"
    with pytest.raises(SystemExit) as info:  # refused before anything loads or trains
        rl_cli(["vpo", "--config", str(recipe), "--lerning_rate", "1e-5"])
    assert info.value.code == 2 and "unrecognized arguments: --lerning_rate 1e-5" in capsys.readouterr().err
    typo = tmp_path / "typo.yaml"
    typo.write_text(recipe.read_text() + "\nlerning_rate: 1.0e-5\n")
    with pytest.raises(SystemExit) as info:
        rl_cli(["vpo", "--config", str(typo)])
    assert info.value.code == 2 and "the recipe sets unknown fields: lerning_rate" in capsys.readouterr().err


def test_every_command_builds_its_parser_with_hf_argument_parser():
    from rapid_agent import cli
    from rapid_agent.cli_args import HfArgumentParser
    from rapid_agent.demo import command as demo
    from rapid_agent.eval import __main__ as eval_cli
    from rapid_agent.rl import __main__ as rl_cli
    from rapid_agent.serve import command as serve

    parsers = [cli.build_parser(), cli.build_run_parser(), serve.build_parser(), demo.build_parser()]
    parsers += [eval_cli.build_parser(), eval_cli.build_parser(sweep=True), eval_cli.build_merge_parser()]
    parsers += [eval_cli.build_compare_parser(), rl_cli.build_parser("vpo"), rl_cli.build_parser("grpo")]
    assert all(isinstance(p, HfArgumentParser) for p in parsers[:-2])
    # TRL's parser extends its own copy of transformers' HfArgumentParser (trl.scripts._hf_argparser)
    assert all("HfArgumentParser" in [c.__name__ for c in type(p).__mro__] for p in parsers[-2:])
    # the pipeline options are the same dataclass-derived flags in run, serve and eval
    for parser in (cli.build_run_parser(), serve.build_parser(), eval_cli.build_parser()):
        flags = {s for a in parser._actions for s in a.option_strings}
        assert {"--reasoner-temperature", "--captioner-option", "--strict-answers", "--trace", "--mode"} <= flags


def test_repeated_and_list_options_keep_their_command_line_forms():
    from rapid_agent.cli import build_run_parser
    from rapid_agent.cli_args import parse
    from rapid_agent.eval.__main__ import build_merge_parser, build_parser

    args, pipeline, trace = parse(
        build_run_parser(),
        ["--image", "a.png", "--image", "b.png", "--question", "q", "--choices", "x", "y", "--trace-content"],
    )
    assert args.image == ["a.png", "b.png"] and args.choices == ["x", "y"] and trace.trace_content is True
    args, pipeline, _ = parse(
        build_parser(),
        [
            "--benchmark",
            "a",
            "--benchmark",
            "b",
            "--out",
            "o",
            "--reasoner",
            "r1",
            "--reasoner",
            "r2",
            "--mode",
            "cap",
        ],
    )
    assert args.benchmark == ["a", "b"] and pipeline.reasoner == ["r1", "r2"] and pipeline.mode == ["cap"]
    merge, rest = parse(build_merge_parser(), ["--out", "o", "s1", "s2"])
    assert str(merge.out) == "o" and [str(s) for s in rest.sources] == ["s1", "s2"]
