"""The planner: every paper recipe fits 80 GiB GPUs by its stated layout and prints it; its figures agree with ones
computed here by hand; a layout that does not fit exits non-zero saying what; recipes name hosts a launcher fills."""

from __future__ import annotations

from pathlib import Path

import pytest
from trl import TrlParser

from rapid_agent.rl.__main__ import cli
from rapid_agent.rl.config import STAGES
from rapid_agent.rl.plan import GIB, LayoutConfig, fill_hosts, plan

RECIPES = Path(__file__).resolve().parents[1] / "rl" / "recipes"
PAPER = sorted(RECIPES.glob("qwen2_5_vl_*.yaml"))
#: parameters (measured on the meta device from the published configurations; rl/sizes.py)
P7, P32, P72, R1 = 8_291_249_152, 33_446_981_632, 73_404_254_208, 7_615_616_512


def parse(recipe: Path, *overrides: str):
    stage = recipe.stem.rsplit("_", 1)[-1]
    config, layout = TrlParser((STAGES[stage], LayoutConfig)).parse_args_and_config(
        ["--config", str(recipe), *overrides]
    )
    return config, layout, stage


def figures(recipe: Path, *overrides: str) -> dict[str, float]:
    config, layout, stage = parse(recipe, *overrides)
    return {item: gib for item, gib, _ in plan(config, layout, stage=stage).training}


@pytest.mark.parametrize("recipe", PAPER, ids=lambda p: p.name)
def test_every_paper_recipe_fits_80_gib_gpus_and_prints_its_layout(recipe, capsys) -> None:
    assert cli(["plan", "--config", str(recipe), "--gpu-memory-gib", "80"]) == 0
    out = capsys.readouterr().out
    assert "node 0 ($TRAIN_HOST_0): GPUs 0-7  training" in out and out.rstrip().endswith("fits")
    if "_vpo" in recipe.name:
        assert "($REASONER_HOST)" in out and "vllm serve deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" in out
    if any(size in recipe.name for size in ("32b", "72b")):
        assert "($ROLLOUT_HOST): GPUs 0-3  rollouts: trl vllm-serve, tensor parallel 4" in out


def test_7b_vpo_figures_by_hand() -> None:
    """ZeRO-2 on 8 GPUs, colocated vLLM at 0.3, a KL reference, the policy judging in place."""
    got = figures(RECIPES / "qwen2_5_vl_7b_vpo.yaml")
    b, ctx, h, layers, c, vocab = 2, 1024 + 1280 + 1024, 3584, 28, 1024, 151936
    activations = b * (ctx * h * (2 * layers + 34) + c * vocab * 6 + 4 * 1280 * 1280 * 2 * 32)
    expected = {
        "policy weights": 2 * P7,  # bfloat16, whole under ZeRO-2
        "gradients": 2 * P7 / 8,
        "optimizer": 12 * P7 / 8,
        "reference model": 2 * P7,
        "judge": 0,
        "rollout engine": 0.3 * 80 * GIB,
        "activations": activations,
        "CUDA context, NCCL, allocator": 3 * GIB,
    }
    assert got == pytest.approx({k: v / GIB for k, v in expected.items()}, abs=1e-6)
    assert sum(got.values()) == pytest.approx(75.92, abs=0.01)


def test_72b_vpo_figures_by_hand() -> None:
    """ZeRO-3 over 16 GPUs with the optimizer on CPU; rollouts and the judge on the rollout server."""
    config, layout, stage = parse(RECIPES / "qwen2_5_vl_72b_vpo.yaml")
    result = plan(config, layout, stage=stage)
    got = {item: gib for item, gib, _ in result.training}
    assert got["policy weights"] == got["gradients"] == got["reference model"] == pytest.approx(2 * P72 / 16 / GIB)
    assert got["optimizer"] == 0 and got["judge"] == 0 and got["rollout engine"] == 0
    assert got["ZeRO-3 live parameters"] == pytest.approx(2e9 / GIB)
    assert result.host_gib == pytest.approx(12 * P72 / 2 / GIB)  # each of 2 nodes holds half the optimizer
    rollout, reasoner = result.engines
    kv_72b = 80 * 2 * 8 * 128 * 2  # bytes a token: layers x (k, v) x kv heads x head dim x bf16
    room = 0.9 * 80 - 2 * P72 / 4 / GIB - 2
    assert f"KV cache {room:.2f} GiB = {int(room // (kv_72b / 4 * 3328 / GIB))} request(s) of 3328" in rollout
    assert f"weights {2 * R1 / GIB:.2f}" in reasoner and "of 10240 tokens" in reasoner


def test_the_issues_zero3_figures_and_what_does_not_fit(capsys) -> None:
    """ZeRO-3 holds 16 bytes a trained parameter: 72B on 8 GPUs ~146.8 GB a GPU, 32B ~66.9 GB, before the rest."""
    zero3 = ["--accelerate_config", "rl/recipes/accelerate/zero3.yaml", "--per_device_train_batch_size", "1"]
    for recipe, params in (("qwen2_5_vl_72b_grpo.yaml", P72), ("qwen2_5_vl_32b_vpo.yaml", P32)):
        got = figures(RECIPES / recipe, *zero3)
        state = (got["policy weights"] + got["gradients"] + got["optimizer"]) * GIB
        assert state == pytest.approx(16 * params / 8)
    assert round(16 * P72 / 8 / 1e9, 1) == 146.8 and round(16 * P32 / 8 / 1e9, 1) == 66.9
    assert cli(["plan", "--config", str(RECIPES / "qwen2_5_vl_72b_grpo.yaml"), *zero3]) == 1
    assert "a training GPU needs" in capsys.readouterr().out


def test_the_policy_judge_under_zero3_is_refused_naming_the_rollout_server(capsys) -> None:
    recipe = RECIPES / "qwen2_5_vl_32b_vpo.yaml"
    assert cli(["plan", "--config", str(recipe), "--judge", "policy"]) == 1
    out = capsys.readouterr().out
    assert (
        "gathers the whole policy" in out
        and "judge: openai:Qwen/Qwen2.5-VL-32B-Instruct@http://${ROLLOUT_HOST}" in out
    )


def test_vllm_with_the_models_full_context_does_not_start(capsys) -> None:
    """7B colocated at 0.3 of 80 GiB: ~6.6 GiB of KV cache, less than one 128k-token request needs (~6.8 GiB)."""
    recipe = RECIPES / "qwen2_5_vl_7b_grpo.yaml"
    assert cli(["plan", "--config", str(recipe), "--vllm_max_model_length", "128000"]) == 1
    assert "no room for one request of 128000 tokens" in capsys.readouterr().out


def test_smaller_gpus_do_not_fit(capsys) -> None:
    assert cli(["plan", "--config", str(RECIPES / "qwen2_5_vl_7b_vpo.yaml"), "--gpu-memory-gib", "40"]) == 1
    assert "more than 40" in capsys.readouterr().out


def test_hosts_are_filled_from_the_launchers_variables(monkeypatch) -> None:
    config, _, _ = parse(RECIPES / "qwen2_5_vl_72b_vpo.yaml")
    monkeypatch.delenv("REASONER_HOST", raising=False)
    monkeypatch.setenv("ROLLOUT_HOST", "node-c")
    with pytest.raises(SystemExit, match=r"reasoner names \$\{REASONER_HOST\}, which is not set"):
        fill_hosts(config)
    monkeypatch.setenv("REASONER_HOST", "node-c")
    fill_hosts(config)
    assert config.vllm_server_host == "node-c" and "@http://node-c:8000/v1" in config.reasoner
    assert config.judge == "openai:runs/qwen2_5_vl_72b_grpo@http://node-c:8001/v1"
