"""Engine resolution: spec strings, engine options (checked, part of the cache key), chat models, built-in names."""

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from rapid_agent.backends import builtin_model_path, load_engine, register_builtin_model
from rapid_agent.backends.batching import get_batcher


def test_options_are_part_of_the_cache_key_and_unknown_ones_are_named(tiny_reasoner_dir):
    spec = f"hf:{tiny_reasoner_dir}"
    default = load_engine(spec, "reasoner")
    small = load_engine(spec, "reasoner", max_batch_size=2)
    assert small is not default and small.max_batch_size == 2 and default.max_batch_size == 16
    assert load_engine(spec, "reasoner", max_batch_size=2) is small
    with pytest.raises(ValueError, match=r"unknown 'hf' engine option\(s\) \['max_batchsize'\]; known options: "):
        load_engine(spec, "reasoner", max_batchsize=2)


def test_a_chat_model_gets_one_engine_so_its_runs_share_a_batcher():
    model = FakeListChatModel(responses=["\\boxed{1}"])
    engine = load_engine(model, "reasoner")
    assert load_engine(model, "reasoner") is engine and get_batcher(load_engine(model, "reasoner")) is get_batcher(
        engine
    )
    assert load_engine(FakeListChatModel(responses=["x"]), "reasoner") is not engine
    with pytest.raises(ValueError, match="only serve as the reasoner"):
        load_engine(model, "captioner")


def test_built_in_names_resolve_through_the_registry(tmp_path):
    target = tmp_path / "model.gguf"
    register_builtin_model("My-Model", lambda: target)
    assert builtin_model_path("my-model") == target and builtin_model_path("nothing-like-it") is None


def test_the_bundled_reasoner_is_registered_by_importing_the_package(smollm2_gguf):
    assert builtin_model_path("smollm2-135m-instruct") == smollm2_gguf
