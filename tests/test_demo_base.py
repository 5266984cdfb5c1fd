"""Tests for rapid_agent.demo.base: the shipped perception base perceives, is checked before use, and is what the
demo's SFT starts from."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from rapid_agent.demo import DemoConfig, measure
from rapid_agent.demo.base import BUNDLED_DIR, pretrain, resolve
from rapid_agent.demo.cache import MANIFEST
from rapid_agent.demo.captioner import ensure_captioner
from rapid_agent.demo.config import SCRATCH


def _engine(folder: Path):
    from rapid_agent.backends import load_engine

    return load_engine(f"hf:{folder}", "captioner", max_batch_size=96)


def test_the_bundled_base_describes_held_out_scenes() -> None:
    config = DemoConfig()
    folder, facts = resolve(config)
    assert folder == BUNDLED_DIR and len(facts["base_sha256"]) == 64
    found = measure.descriptions(_engine(folder), list(config.build_world(1)["test"]), config)
    # the demo's 48 held-out scenes, never pretrained on: the base counts up to 8 objects of 12 kinds
    assert found["n"] == 48 and found["exact"] >= 0.85, found["examples"]
    assert min(found["query_caption_exact"].values()) >= 0.8


def test_the_bundled_base_judges_every_style_including_short_counts() -> None:
    from rapid_agent.world import COLOURS

    config = DemoConfig()
    folder, _ = resolve(config)
    engine = _engine(folder)
    items = list(config.build_world(1)["test"])
    judged = measure.judge(engine, items, config)
    assert judged["n"] == 48 * 5 and judged["unparsed"] == 0.0
    assert min(judged["by_style"].values()) >= 0.95, judged["by_style"]
    # the former base judged these no description ("There are 2 circles.": no colour named): VPO's penalty then
    # took the reward off right samples in the style the reasoner can use
    short = [it for it in items if it["level"] == 1 and not any(c in it["query_caption"] for c in COLOURS)]
    assert len(short) >= 5
    assert measure.judge(engine, short, config)["by_style"]["counts"] == 1.0


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"max_objects": 6}, "max_objects=8"),
        ({"text_hidden": 64}, "text_hidden=128"),
        ({"world_seed": 3}, "world_seed=0"),
        ({"n_test": 300}, "n_test=300"),
    ],
)
def test_a_base_refuses_a_world_it_was_not_trained_on(overrides: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        resolve(DemoConfig(**overrides))


def test_a_damaged_or_missing_base_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "base"
    shutil.copytree(BUNDLED_DIR, copy)
    config = DemoConfig(captioner_base=str(copy))
    assert resolve(config)[0] == copy  # an intact copy is accepted
    weights = copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="model.safetensors does not match its recorded SHA-256"):
        resolve(config)
    (copy / MANIFEST).unlink()
    with pytest.raises(ValueError, match="no manifest"):
        resolve(config)
    with pytest.raises(ValueError, match="not built yet"):
        resolve(DemoConfig(captioner_base=str(tmp_path / "nowhere")))


def test_sft_starts_from_the_base(tmp_path: Path) -> None:
    """Two tiny SFT steps from the base keep its perception; the same steps from random weights perceive nothing."""
    common = {"n_train": 12, "n_test": 8, "sft_steps": 2, "sft_batch_size": 4, "sft_lr": 1e-5, "style_samples": 1}
    world = DemoConfig(**common).build_world()
    train, held_out = list(world["train"]), list(world["test"])
    _, from_base, _ = ensure_captioner(DemoConfig(**common), train, held_out, cache_root=tmp_path, progress=False)
    _, from_scratch, _ = ensure_captioner(
        DemoConfig(**common, captioner_base=SCRATCH), train, held_out, cache_root=tmp_path, progress=False
    )
    assert from_base["key"] != from_scratch["key"]
    assert from_base["info"]["descriptions"]["exact"] >= 0.75
    assert from_scratch["info"]["descriptions"]["exact"] == 0.0
    assert from_base["info"]["base_pretraining"]["steps"] > 1000


def test_pretrain_writes_a_base_the_demo_accepts(tmp_path: Path) -> None:
    tiny = {"text_hidden": 32, "layers": 1, "vision_hidden": 16, "vision_depth": 1, "captioner_max_new_tokens": 8}
    config = DemoConfig(captioner_base=SCRATCH, style_samples=1, **tiny)
    common = {"n_train": 16, "lr": 1e-3, "mixture_lr": 1e-3, "seed": 0, "held_out": 4, "evals": 2, "progress": False}
    out = tmp_path / "base"
    manifest = pretrain(config, out, steps=4, mixture_steps=0, **common)
    info = manifest["info"]
    assert list(info["stages"]) == ["perception"] and info["steps"] == 4 and info["held_out"] == 4
    assert info["stages"]["perception"]["tasks"] == ["cap", "qcap"] and len(info["stages"]["perception"]["curve"]) == 1
    assert info["bound"]["text_hidden"] == 32
    folder, facts = resolve(DemoConfig(captioner_base=str(out), n_test=4, **tiny))
    assert folder == out and facts["base_pretraining"]["n_train"] == 16
    with pytest.raises(ValueError, match="n_test=5 is more than the 4 held-out items"):
        resolve(DemoConfig(captioner_base=str(out), n_test=5, **tiny))

    # stage 2 continues from stage 1's weights: the whole mixture, the perception stage's record kept
    more = pretrain(config, tmp_path / "more", steps=4, mixture_steps=3, start_from=out, **common)["info"]
    assert more["stages"]["perception"]["steps"] == 4 and more["stages"]["mixture"]["steps"] == 3
    assert {"judge", "qcap+sol", "direct"} <= set(more["stages"]["mixture"]["tasks"]) and more["steps"] == 7
    assert more["judge"]["n"] == 4 * 5  # each held-out item in the 4 descriptive styles and as a bare answer
    from safetensors.torch import load_file

    before, after = load_file(out / "model.safetensors"), load_file(tmp_path / "more" / "model.safetensors")
    assert any(not (before[k] == after[k]).all() for k in before)  # the mixture stage trained the weights
    with pytest.raises(ValueError, match="another world"):
        pretrain(
            dataclasses.replace(config, max_objects=6),
            tmp_path / "x",
            steps=1,
            mixture_steps=1,
            start_from=out,
            **common,
        )
