"""VLLMEngine: the clear error without vLLM, and its calls against a recording stand-in for the `vllm` module."""

from __future__ import annotations

import io
import sys
import types
from types import SimpleNamespace

import pytest
from PIL import Image

from rapid_agent.backends import BackendUnavailableError, ChatRequest, EngineError, GenerationConfig, load_engine
from rapid_agent.backends.images import data_url_to_bytes
from rapid_agent.backends.vllm import VLLMEngine


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeLLM:
    """Records its construction and every chat call; answers with the prompt's word count, fails on 'POISON'."""

    instances: list[FakeLLM] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple[list, FakeSamplingParams, dict]] = []
        FakeLLM.instances.append(self)

    def chat(self, conversations, params, **kwargs):
        self.calls.append((conversations, params, kwargs))
        outputs = []
        for conv in conversations:
            content = conv[-1]["content"]
            text = content if isinstance(content, str) else next(p["text"] for p in content if p["type"] == "text")
            if "POISON" in text:
                raise ValueError("prompt too long for max_model_len")
            has_image = isinstance(content, list) and any(p["type"] == "image_url" for p in content)
            sample = SimpleNamespace(text=f"{text.upper()} image={has_image}", token_ids=[7] * 3, finish_reason="stop")
            outputs.append(SimpleNamespace(prompt_token_ids=list(range(len(text.split()) + 10)), outputs=[sample]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = FakeSamplingParams
    FakeLLM.instances = []
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_missing_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail whether or not it is installed
    with pytest.raises(BackendUnavailableError) as info:
        load_engine("vllm:some/model", "captioner")
    assert "rapid-agent[vllm]" in str(info.value) and "GPU" in str(info.value)


def test_captioner_builds_llm_with_an_image_limit_and_the_given_memory_share(fake_vllm):
    engine = VLLMEngine("org/vl-model", role="captioner", seed=3, gpu_memory_utilization=0.5, max_images_per_prompt=5)
    assert engine.llm.kwargs == {
        "model": "org/vl-model",
        "seed": 3,
        "gpu_memory_utilization": 0.5,
        "limit_mm_per_prompt": {"image": 5},
        # the library's one pixel budget (the checkpoint's own is not readable here: capped at neither)
        "mm_processor_kwargs": {"max_pixels": 1280 * 28 * 28},
    }


def test_reasoner_builds_llm_without_mm_limit(fake_vllm):
    engine = load_engine("vllm:org/text-model", "reasoner", tensor_parallel_size=2)
    assert isinstance(engine, VLLMEngine) and engine.spec == "vllm:org/text-model"
    assert engine.llm.kwargs == {
        "model": "org/text-model",
        "seed": 0,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.5,
    }


def test_default_memory_shares_let_a_captioner_and_a_reasoner_share_one_gpu(fake_vllm):
    captioner = VLLMEngine("org/vl-model", role="captioner")
    reasoner = VLLMEngine("org/text-model", role="reasoner")
    total = captioner.llm.kwargs["gpu_memory_utilization"] + reasoner.llm.kwargs["gpu_memory_utilization"]
    assert total <= 0.9  # vLLM's own default is 0.9 for each, which makes the second engine fail to start
    assert captioner.llm.kwargs["limit_mm_per_prompt"] == {"image": 8}


def test_generate_sends_conversations_and_sampling_params(fake_vllm):
    engine = VLLMEngine("org/vl-model", role="captioner")
    image = Image.new("RGB", (4, 4), (1, 2, 3))
    gen = GenerationConfig(temperature=0.7, top_p=0.8, max_new_tokens=33, seed=11, top_k=7, repetition_penalty=1.2)
    out = engine.generate([ChatRequest("describe it", image=image, system="sys"), ChatRequest("no picture")], gen)

    [(conversations, params, kwargs)] = engine.llm.calls
    # every field of the GenerationConfig, explicitly (as every engine applies them)
    assert params.kwargs == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 7,
        "min_p": 0.0,
        "repetition_penalty": 1.2,
        "max_tokens": 33,
        "seed": 11,
    }
    assert kwargs == {"use_tqdm": False}
    assert conversations[0][0] == {"role": "system", "content": "sys"}
    image_part, text_part = conversations[0][1]["content"]
    assert text_part == {"type": "text", "text": "describe it"}
    mime, data = data_url_to_bytes(image_part["image_url"]["url"])
    assert mime == "image/png" and Image.open(io.BytesIO(data)).convert("RGB").tobytes() == image.tobytes()
    assert conversations[1] == [{"role": "user", "content": "no picture"}]

    assert [o.text for o in out] == ["DESCRIBE IT image=True", "NO PICTURE image=False"]
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (12, 3)
    assert out[0].finish_reason == "stop" and out[0].latency_s >= 0


def test_a_batch_vllm_rejects_is_isolated_to_the_bad_request(fake_vllm):
    engine = VLLMEngine("m", role="reasoner")
    out = engine.generate(
        [ChatRequest("fine one"), ChatRequest("POISON"), ChatRequest("fine two")], GenerationConfig()
    )
    assert out[0].text == "FINE ONE image=False" and out[2].text == "FINE TWO image=False"
    assert isinstance(out[1], EngineError) and "max_model_len" in str(out[1])
    # one failed batch call, then one call per request
    assert [len(c[0]) for c in engine.llm.calls] == [3, 1, 1, 1]


def test_close_releases_the_model(fake_vllm):
    engine = VLLMEngine("m", role="reasoner")
    engine.close()
    assert engine.llm is None
