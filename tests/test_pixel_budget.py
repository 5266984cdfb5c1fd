"""One pixel budget reaches every path: the same image makes the same number of image tokens for the policy's
processor, TRL's vLLM rollouts, the hf and vllm engines (evaluation and serving go through them) and a checkpoint
the trainer saved. The checkpoint here has Qwen2.5-VL-Instruct's own bounds (max_pixels 12845056), under which a
1920x1080 image decoded at the library's budget would be 1296 tokens instead of 1222."""

from __future__ import annotations

import sys
import types

import pytest
from PIL import Image

from rapid_agent.backends import load_engine
from rapid_agent.backends.pixels import DEFAULT_MAX_PIXELS, cap_pixel_budget, fit_to_grid, image_tokens
from rapid_agent.inputs import load_image
from rapid_agent.models import build_tiny_qwen2_5_vl
from rapid_agent.rl.config import SolutionConfig
from rapid_agent.rl.models import load_captioner

CHECKPOINT_MIN, CHECKPOINT_MAX = 3136, 12845056


def tokens(processor, image) -> int:
    ip = getattr(processor, "image_processor", processor)
    (grid,) = ip(images=[image])["image_grid_thw"].tolist()
    return grid[0] * grid[1] * grid[2] // ip.merge_size**2


def vllm_tokens(image, checkpoint_processor, mm_processor_kwargs: dict) -> int:
    """What vLLM 0.34 makes of the image: the checkpoint's bounds, `max_pixels` of mm_processor_kwargs over them."""
    return image_tokens(image.width, image.height, checkpoint_processor, mm_processor_kwargs.get("max_pixels"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("budget") / "base"
    return build_tiny_qwen2_5_vl(path, min_pixels=CHECKPOINT_MIN, max_pixels=CHECKPOINT_MAX)


@pytest.fixture
def fake_vllm(monkeypatch):
    built = []
    module = types.ModuleType("vllm")
    module.LLM = lambda **kwargs: built.append(kwargs) or object()
    module.SamplingParams = dict
    monkeypatch.setitem(sys.modules, "vllm", module)
    return built


@pytest.mark.parametrize("size", [(1920, 1080), (1024, 1024), (640, 480)])
def test_the_same_image_makes_the_same_tokens_on_every_path(checkpoint, tmp_path, fake_vllm, size) -> None:
    from rapid_agent.backends.hf import load_processor

    image = load_image(Image.new("RGB", size, "gray"))  # decoded as inference and training decode it
    raw = load_processor(checkpoint)  # the checkpoint's processor, untouched
    cfg = SolutionConfig(output_dir=str(tmp_path), model_name_or_path=str(checkpoint), mode="sol", use_cpu=True)
    model, policy = load_captioner(cfg)
    trained = tmp_path / "trained"  # what trainer.save_model writes: the model and the policy's processor
    model.save_pretrained(trained)
    policy.save_pretrained(trained)
    paths = {
        "policy processor": tokens(policy, image),
        "TRL rollout to vLLM": vllm_tokens(fit_to_grid(image, policy), raw, {}),
        "hf engine, base": tokens(load_engine(f"hf:{checkpoint}", "captioner", cache=False).processor, image),
        "hf engine, trained": tokens(load_engine(f"hf:{trained}", "captioner", cache=False).processor, image),
        "saved processor": tokens(load_processor(trained), image),
    }
    load_engine(f"vllm:{checkpoint}", "captioner", cache=False)
    paths["vllm engine"] = vllm_tokens(image, raw, fake_vllm[-1]["mm_processor_kwargs"])
    assert len(set(paths.values())) == 1, paths
    if size == (1920, 1080):
        assert paths["policy processor"] == 1222  # the checkpoint's own budget would make it 1296
        assert tokens(raw, image) == 1296


def test_a_budget_never_raises_a_processor_above_its_own(checkpoint) -> None:
    from rapid_agent.backends.hf import load_processor

    small = load_processor(checkpoint)
    assert cap_pixel_budget(small, 200_000) == 200_000
    assert cap_pixel_budget(small, DEFAULT_MAX_PIXELS) == 200_000  # a small checkpoint keeps its own
    assert image_tokens(1920, 1080, small) == image_tokens(1920, 1080, small, 200_000)
