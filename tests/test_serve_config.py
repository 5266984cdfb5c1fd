"""Server settings and pipelines: `ServeConfig` checks, `--pipeline` strings, pipelines files, request sampling,
the `serve` command's options, API keys."""

import json

import pytest

from rapid_agent.backends import GenerationConfig
from rapid_agent.cli_args import parse
from rapid_agent.config import RapidContext
from rapid_agent.serve.auth import KeyChecker, load_api_keys
from rapid_agent.serve.command import build_parser, pipelines_from, serve_config_from
from rapid_agent.serve.config import (
    ServeConfig,
    generation_for_request,
    load_pipelines_file,
    parse_pipeline,
)

BASE = RapidContext(captioner="hf:/m/cap", reasoner="hf:/m/rea", reasoner_gen=GenerationConfig(max_new_tokens=256))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("port", 70000, "port must be in 0..65535, got 70000"),
        ("max_queue", -1, "max_queue must be >= 0, got -1"),
        ("max_body_bytes", 0, "max_body_bytes must be >= 1, got 0"),
        ("request_timeout_s", 0, "request_timeout_s must be > 0, got 0"),
    ],
)
def test_serve_config_checks_quote_the_bad_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        ServeConfig(**{field: value})


def test_pipeline_strings_set_engines_and_mode_over_the_base():
    name, context = parse_pipeline("small=hf:/a,hf:/b,cap", BASE)
    assert name == "small" and (context.captioner, context.reasoner, context.mode) == ("hf:/a", "hf:/b", "cap")
    assert context.reasoner_gen.max_new_tokens == 256  # everything else from the base
    name, context = parse_pipeline("text=,hf:/b,none", BASE)
    assert context.captioner is None and context.mode == "none"
    assert parse_pipeline("eyes=hf:/a,", BASE)[1].reasoner is None
    with pytest.raises(ValueError, match="NAME=CAPTIONER,REASONER"):
        parse_pipeline("small=hf:/a", BASE)
    with pytest.raises(ValueError, match="unknown perception mode 'sideways'"):
        parse_pipeline("small=hf:/a,hf:/b,sideways", BASE)
    with pytest.raises(ValueError, match="pipeline name 'bad name'"):
        parse_pipeline("bad name=hf:/a,hf:/b", BASE)


def test_pipelines_file_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(
        "- name: a\n  reasoner: hf:/other\n  mode: sol\n  reasoner_gen: {temperature: 0.0}\n"
        "- name: b\n  captioner: null\n  mode: none\n  reasoner_options: {max_batch_size: 8}\n"
    )
    pipelines = load_pipelines_file(yaml_file, BASE)
    assert list(pipelines) == ["a", "b"]
    assert pipelines["a"].reasoner == "hf:/other" and pipelines["a"].captioner == "hf:/m/cap"
    assert pipelines["a"].reasoner_gen == GenerationConfig(temperature=0.0, max_new_tokens=256)
    assert pipelines["b"].captioner is None and pipelines["b"].reasoner_options == {"max_batch_size": 8}
    json_file = tmp_path / "p.json"
    json_file.write_text(json.dumps([{"name": "c", "mode": "cap"}, {"name": "c"}]))
    with pytest.raises(ValueError, match="entry 2: pipeline 'c' is defined twice"):
        load_pipelines_file(json_file, BASE)
    json_file.write_text(json.dumps([{"name": "c", "mood": "cap"}]))
    with pytest.raises(ValueError, match=r"entry 1: unknown RapidContext field\(s\): \['mood'\]"):
        load_pipelines_file(json_file, BASE)
    with pytest.raises(ValueError, match="cannot read"):
        load_pipelines_file(tmp_path / "missing.yaml", BASE)


def test_request_sampling_overrides_and_caps_max_tokens():
    gen = GenerationConfig(temperature=0.6, top_p=0.95, max_new_tokens=100)
    assert generation_for_request(gen, max_tokens=None, temperature=None, top_p=None, seed=None) is gen
    changed = generation_for_request(gen, max_tokens=500, temperature=0.0, top_p=0.5, seed=3)
    assert changed == GenerationConfig(temperature=0.0, top_p=0.5, max_new_tokens=100, seed=3)
    assert generation_for_request(gen, max_tokens=20, temperature=None, top_p=None, seed=None).max_new_tokens == 20


def _serve_args(*argv: str) -> tuple:
    """(pipeline options, server options, serve arguments) as `python -m rapid_agent serve ...` parses them."""
    pipeline, options, serve, _trace = parse(
        build_parser(), ["--captioner", "hf:/m/cap", "--reasoner", "hf:/m/rea", *argv]
    )
    return pipeline, options, serve


def serve_config_from_args(args: tuple) -> ServeConfig:
    return serve_config_from(args[1])


def pipelines_from_args(args: tuple) -> dict:
    return pipelines_from(args[0], args[2])


def test_serve_command_options_come_from_the_dataclasses():
    args = _serve_args(
        "--port", "9001", "--max-queue", "3", "--allow-remote-images", "--reasoner-max-new-tokens", "64"
    )
    config = serve_config_from_args(args)
    assert config.port == 9001 and config.max_queue == 3 and config.allow_remote_images is True
    pipelines = pipelines_from_args(args)
    assert list(pipelines) == ["rapid"]  # the context options alone: one pipeline under the default name
    assert pipelines["rapid"].reasoner_gen.max_new_tokens == 64


def test_the_remote_image_allow_list_takes_hosts_addresses_and_networks():
    args = _serve_args("--allow-remote-images", "--remote-image-allow", "images.internal, 10.1.0.0/16,127.0.0.1,[::1]")
    config = serve_config_from_args(args)
    assert config.remote_image_allow == ("images.internal", "10.1.0.0/16", "127.0.0.1", "[::1]")
    assert serve_config_from_args(_serve_args()).remote_image_allow == ()
    assert ServeConfig(remote_image_allow=["Images.Internal."]).remote_image_allow == ("Images.Internal.",)
    with pytest.raises(ValueError, match="'http://x/' is neither a host name nor an IP address or CIDR network"):
        ServeConfig(remote_image_allow=("http://x/",))


def test_serve_command_several_pipelines_and_the_default_one_only_when_named():
    args = _serve_args("--pipeline", "x=hf:/a,hf:/b", "--pipeline", "y=,hf:/b,none")
    assert list(pipelines_from_args(args)) == ["x", "y"]
    args = _serve_args("--pipeline", "x=hf:/a,hf:/b", "--model-name", "main")
    pipelines = pipelines_from_args(args)
    assert list(pipelines) == ["main", "x"] and pipelines["main"].captioner == "hf:/m/cap"
    with pytest.raises(ValueError, match="defined already"):
        pipelines_from_args(_serve_args("--pipeline", "x=hf:/a,hf:/b", "--pipeline", "x=hf:/a,hf:/c"))


def test_api_keys_from_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "keys"
    path.write_text("# comment\nkey-one\n  key-two  \nkey-one\n")
    monkeypatch.setenv("KEYS_ENV", "key-three, key-four")
    assert load_api_keys(path, "KEYS_ENV") == ("key-one", "key-two", "key-three", "key-four")
    monkeypatch.delenv("KEYS_ENV")
    assert load_api_keys(None, "KEYS_ENV") == ()
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no key"):
        load_api_keys(tmp_path / "empty")
    checker = KeyChecker(["key-one", "key-two"])
    assert checker.check("Bearer key-two") and checker.check("bearer key-one")
    assert not checker.check("Bearer key-thre") and not checker.check("key-one") and not checker.check(None)
    assert not checker.check("Bearer ") and KeyChecker([]).check(None)


def test_serve_command_freezes_what_starting_made_before_it_serves(monkeypatch):
    """The objects of start-up (modules, engines, the app) are frozen out of the collector's passes by the time the
    server runs: a full pass over them cost the serving process about 0.5 ms of CPU a request under load."""
    import gc

    import rapid_agent.serve as serve_package
    from rapid_agent.serve.command import main

    seen: dict[str, int] = {}

    def fake_run_server(app, **kwargs):
        seen["frozen"] = gc.get_freeze_count()
        seen["port"] = kwargs["port"]

    monkeypatch.setattr(serve_package, "run_server", fake_run_server)
    try:
        assert main(["--pipeline", "rapid=,openai:m@http://127.0.0.1:1/v1,none", "--port", "8123"]) == 0
    finally:
        gc.unfreeze()
    assert seen["port"] == 8123 and seen["frozen"] > 10_000
