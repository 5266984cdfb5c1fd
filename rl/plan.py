"""Where a recipe runs and whether it fits: `python -m rapid_agent.rl plan --config RECIPE [--gpu-memory-gib N]`.

A recipe states its layout (`LayoutConfig`: the accelerate config of its training processes, the GPUs of its
rollout server and of its reasoner); the planner places the roles on nodes, estimates each GPU's memory and exits
non-zero when something does not fit. The figures are estimates from sources read, not measurements:

    training GPU   DeepSpeed casts the policy to bfloat16 (deepspeed/runtime/engine.py ~2080-2088) and keeps float32
                   masters and Adam's two moments in its optimizer: 2 + 2 + 12 bytes a parameter, the last two
                   divided over the processes from ZeRO-2 on, all three under ZeRO-3; an offloaded optimizer leaves
                   its 12 bytes in host memory. The KL reference (beta > 0, no LoRA) is built by TRL at the policy's
                   dtype and cast likewise: bfloat16, whole under ZeRO-2 (TRL runs it at stage 0), partitioned under
                   ZeRO-3 (trl/models/utils.py `prepare_deepspeed`, ~246-289). `judge: policy` under ZeRO-3 gathers
                   the whole policy on every GPU to generate (trl/models/utils.py ~141-150). Colocated vLLM takes
                   `vllm_gpu_memory_utilization` of the GPU. Activations, with activation checkpointing: each layer's
                   input kept (2 bytes x hidden a token), one layer recomputed (34 bytes x hidden a token, Korthikanti
                   et al. 2022), the completion's logits in bfloat16 and their float32 log-softmax (6 bytes x vocab),
                   the vision tower's inputs (4 patches an image token); ZeRO-3 keeps up to 1e9 gathered parameters
                   live (stage3_max_live_parameters); CUDA context, NCCL and the allocator take 3 GiB.
    vLLM GPU       weights (bfloat16, over the tensor-parallel GPUs) and 2 GiB of runtime within its memory share
                   (0.9 for servers), the rest KV cache, which must hold one request of the context it is started
                   with (vllm/v1/core/kv_cache_planning.py `check_enough_kv_cache_memory`, ~196-231).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rapid_agent.backends import parse_spec
from rapid_agent.rl.config import RapidRLConfig, VPOConfig, rollout_context_length
from rapid_agent.rl.sizes import ModelSize, model_size

GIB = 2**30
OVERHEAD_GIB = 3.0
VLLM_RUNTIME_GIB = 2.0
SERVER_MEMORY_SHARE = 0.9  # `vllm serve`'s (and `trl vllm-serve`'s) default gpu_memory_utilization
ZERO3_LIVE_PARAMS = 1e9  # DeepSpeed's default stage3_max_live_parameters
ROLLOUT_PORT, REASONER_PORT = 8001, 8000
_HOST_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class LayoutConfig:
    """Where a recipe's roles run. Recipes set it; `plan` checks it; host names are `${VARIABLES}` a launcher sets."""

    accelerate_config: str = field(
        default="",
        metadata={
            "help": "The accelerate config the training processes launch with (rl/recipes/accelerate/...): its "
            "DeepSpeed stage, offload, machines and processes. Empty: one process, no DeepSpeed."
        },
    )
    rollout_gpus: int = field(
        default=0,
        metadata={"help": "GPUs of the `trl vllm-serve` rollout server (server mode; its tensor parallelism)."},
    )
    reasoner_gpus: int = field(
        default=0,
        metadata={"help": "GPUs of the VPO reasoner's `vllm serve` (one data-parallel replica per GPU)."},
    )
    gpus_per_node: int = field(default=8, metadata={"help": "GPUs of one node."})
    gpu_memory_gib: float = field(default=80.0, metadata={"help": "Memory of one GPU, GiB."})
    cpu_memory_gib: float = field(
        default=1024.0, metadata={"help": "Host memory of a training node (an offloaded optimizer lives there), GiB."}
    )

    def __post_init__(self) -> None:
        for name in ("rollout_gpus", "reasoner_gpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("gpus_per_node", "gpu_memory_gib", "cpu_memory_gib"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.rollout_gpus > self.gpus_per_node:
            raise ValueError(f"rollout_gpus must fit one node ({self.gpus_per_node} GPUs), got {self.rollout_gpus!r}")


@dataclass
class Training:
    """The training processes, as their accelerate config sets them."""

    machines: int = 1
    processes: int = 1
    zero_stage: int = 0  # 0: no DeepSpeed (DDP)
    offload_optimizer: bool = False
    offload_params: bool = False

    @classmethod
    def read(cls, path: str) -> Training:
        if not path:
            return cls()
        file = Path(path)
        if not file.is_file():
            file = Path(__file__).resolve().parent / "recipes" / "accelerate" / Path(path).name
        data = yaml.safe_load(file.read_text())
        ds = data.get("deepspeed_config") or {}
        deepspeed = data.get("distributed_type") == "DEEPSPEED"
        return cls(
            machines=int(data.get("num_machines", 1)),
            processes=int(data.get("num_processes", 1)),
            zero_stage=int(ds.get("zero_stage", 0)) if deepspeed else 0,
            offload_optimizer=deepspeed and ds.get("offload_optimizer_device", "none") not in ("none", None),
            offload_params=deepspeed and ds.get("offload_param_device", "none") not in ("none", None),
        )


@dataclass
class Plan:
    """Per-GPU figures (GiB) of each role, the node layout, the launch commands, and what does not fit."""

    training: list[tuple[str, float, str]]
    host_gib: float
    engines: list[str]
    nodes: list[str]
    commands: list[str]
    problems: list[str]

    @property
    def fits(self) -> bool:
        return not self.problems


def _gib(n: float) -> float:
    return n / GIB


def activation_bytes(config: RapidRLConfig, size: ModelSize) -> float:
    """Activations of one micro-batch on one training GPU (see the module docstring)."""
    batch, context = config.per_device_train_batch_size, config.vllm_max_model_length or rollout_context_length(config)
    image_tokens = (config.max_pixels or 1280 * 28 * 28) // (28 * 28)
    if config.activation_checkpointing or config.gradient_checkpointing:
        layers = context * size.hidden * (2 * size.layers + 34)
    else:
        layers = context * size.hidden * 34 * size.layers
    logits = config.max_completion_length * size.vocab * 6
    vision = 4 * image_tokens * size.vision_hidden * 2 * size.vision_depth
    return batch * (layers + logits + vision)


def _policy_rows(config: RapidRLConfig, training: Training, size: ModelSize) -> tuple[list, float]:
    """(item, bytes a GPU, note) of the policy, its optimizer and its reference; and host bytes a node."""
    p, n = size.params, training.processes
    per_node = training.processes // training.machines
    if training.zero_stage == 0:  # DDP: float32 parameters, gradients and Adam moments on every GPU
        rows = [
            ("policy weights", 4 * p, "float32, whole"),
            ("gradients", 4 * p, "float32"),
            ("optimizer", 8 * p, "Adam"),
        ]
        host = 0.0
    else:
        sharded = training.zero_stage == 3
        weights = 0 if training.offload_params else (2 * p / n if sharded else 2 * p)
        grads = 2 * p / n if training.zero_stage >= 2 else 2 * p
        optimizer = 0 if training.offload_optimizer else 12 * p / n
        host = 12 * p / n * per_node if training.offload_optimizer else 0.0
        share = f"1/{n}" if sharded else "whole"
        rows = [
            ("policy weights", weights, f"bf16, {share}"),
            ("gradients", grads, f"bf16, 1/{n}" if training.zero_stage >= 2 else "bf16"),
            ("optimizer", optimizer, "on CPU" if training.offload_optimizer else f"fp32 master + Adam, 1/{n}"),
        ]
    if config.beta > 0 and not config.use_peft:
        sharded = training.zero_stage == 3
        ref = 2 * p / n if sharded else (2 * p if training.zero_stage else 4 * p)
        rows.append(("reference model", ref, f"bf16, 1/{n}" if sharded else "whole"))
    else:
        rows.append(("reference model", 0, "none (beta 0)" if config.beta == 0 else "none (LoRA)"))
    if training.zero_stage == 3:
        rows.append(("ZeRO-3 live parameters", 2 * ZERO3_LIVE_PARAMS, "gathered for compute"))
    return rows, host


def _frozen_rows(config: RapidRLConfig, training: Training, size: ModelSize) -> tuple[list, list[str]]:
    """The judge and in-process reasoners on a training GPU, and the problems they make."""
    if not isinstance(config, VPOConfig):
        return [], []
    rows, problems = [], []
    if not config.judges_captions:
        rows.append(("judge", 0, "off"))
    elif config.judge == "policy":
        gathered = 2 * size.params if training.zero_stage == 3 else 0
        rows.append(("judge", gathered, "policy, gathered whole (ZeRO-3)" if gathered else "policy, in place"))
        if gathered:
            problems.append(
                "judge: policy gathers the whole policy on every GPU under ZeRO-3 (trl/models/utils.py ~141-150); "
                f"judge on the rollout server instead: judge: openai:{config.model_name_or_path}@http://${{ROLLOUT_HOST}}:"
                f"{ROLLOUT_PORT}/v1"
            )
    else:
        kind, model = parse_spec(config.judge)
        rows.append(("judge", 2 * model_size(model).params if kind == "hf" else 0, f"{kind}: engine"))
    for spec in config.reasoner_specs:
        kind, model = parse_spec(spec)
        if kind == "hf":
            rows.append((f"reasoner {model}", 2 * model_size(model).params, "hf: in every process"))
    return rows, problems


def _vllm(role: str, size: ModelSize, share: float, gpu_gib: float, tp: int, context: int) -> tuple[str, str | None]:
    """One vLLM engine's GPU: weights, runtime and the requests of `context` tokens its KV cache holds."""
    weights = _gib(2 * size.params / tp)
    kv = share * gpu_gib - weights - VLLM_RUNTIME_GIB
    per_request = _gib(size.kv_bytes_per_token / tp * context)
    requests = math.floor(kv / per_request) if kv > 0 else 0
    line = (
        f"{role}: {size.name}, {share:g} of a GPU = {share * gpu_gib:.1f} GiB: weights {weights:.2f} "
        f"(tensor parallel {tp}) + runtime {VLLM_RUNTIME_GIB:.1f}, KV cache {max(kv, 0):.2f} GiB = {requests} "
        f"request(s) of {context} tokens"
    )
    problem = None if requests >= 1 else f"{role}: no room for one request of {context} tokens ({line})"
    return line, problem


def _nodes_and_commands(config: RapidRLConfig, layout: LayoutConfig, training: Training, stage: str, recipe: str):
    per_node = training.processes // training.machines
    kind = f"DeepSpeed ZeRO-{training.zero_stage}" if training.zero_stage else "DDP"
    if training.offload_optimizer:
        kind += ", optimizer state on CPU"
    nodes = [
        f"node {i} ($TRAIN_HOST_{i}): GPUs 0-{per_node - 1}  training: {per_node} of {training.processes} processes, {kind}"
        + (", vLLM colocated" if config.use_vllm and config.vllm_mode == "colocate" else "")
        for i in range(training.machines)
    ]
    commands, services, gpu = [], [], 0
    if layout.rollout_gpus:
        services.append(("rollouts", "$ROLLOUT_HOST", layout.rollout_gpus))
    if layout.reasoner_gpus:
        services.append(("reasoner", "$REASONER_HOST", layout.reasoner_gpus))
    node = training.machines
    for role, host, count in services:
        if gpu + count > layout.gpus_per_node:
            node, gpu = node + 1, 0
        ids = ",".join(str(g) for g in range(gpu, gpu + count))
        if role == "rollouts":
            nodes.append(
                f"node {node} ({host}): GPUs {gpu}-{gpu + count - 1}  rollouts: trl vllm-serve, tensor parallel {count}"
            )
            commands.append(
                f"CUDA_VISIBLE_DEVICES={ids} trl vllm-serve --model {config.model_name_or_path} --tensor_parallel_size "
                f"{count} --port {config.vllm_server_port} --max_model_len {config.vllm_max_model_length}"
            )
        else:
            model = parse_spec(config.reasoner)[1].split("@", 1)[0]
            nodes.append(
                f"node {node} ({host}): GPUs {gpu}-{gpu + count - 1}  reasoner: vllm serve, data parallel {count}"
            )
            commands.append(
                f"CUDA_VISIBLE_DEVICES={ids} vllm serve {model} --data-parallel-size {count} --port {REASONER_PORT} "
                f"--max-model-len {reasoner_context(config)}"
            )
        gpu += count
    launch = f"accelerate launch --config_file {layout.accelerate_config}" if layout.accelerate_config else "python"
    if training.machines > 1:
        launch += " --machine_rank $NODE_RANK --main_process_ip $TRAIN_HOST_0"
    commands.append(f"{launch} -m rapid_agent.rl {stage} --config {recipe}")
    return nodes, commands


def reasoner_context(config: VPOConfig) -> int:
    """Tokens a reasoner request may need: the question and caption (the captioner's room) and the reasoning."""
    return config.max_prompt_text_tokens + config.max_completion_length + config.reasoner_max_new_tokens


def plan(config: RapidRLConfig, layout: LayoutConfig, *, stage: str, recipe: str = "RECIPE") -> Plan:
    """Place `config`'s roles as `layout` says and estimate every GPU's memory."""
    training = Training.read(layout.accelerate_config)
    size = model_size(config.model_name_or_path)
    rows, host = _policy_rows(config, training, size)
    frozen, problems = _frozen_rows(config, training, size)
    rows += frozen
    colocated = config.use_vllm and config.vllm_mode == "colocate"
    share = config.vllm_gpu_memory_utilization if colocated else 0.0
    rows.append(
        ("rollout engine", share * layout.gpu_memory_gib * GIB, "vLLM colocated" if colocated else "none here")
    )
    rows.append(("activations", activation_bytes(config, size), f"micro-batch {config.per_device_train_batch_size}"))
    rows.append(("CUDA context, NCCL, allocator", OVERHEAD_GIB * GIB, ""))
    table = [(item, _gib(b), note) for item, b, note in rows]
    total = sum(g for _, g, _ in table)
    if total > layout.gpu_memory_gib:
        problems.append(f"a training GPU needs {total:.1f} GiB, more than {layout.gpu_memory_gib:g}")
    if _gib(host) > layout.cpu_memory_gib:
        problems.append(
            f"a training node needs {_gib(host):.0f} GiB of host memory, more than {layout.cpu_memory_gib:g}"
        )
    engines = []
    context = config.vllm_max_model_length or rollout_context_length(config)
    if config.use_vllm:
        tp = layout.rollout_gpus if not colocated else config.vllm_tensor_parallel_size
        if not colocated and layout.rollout_gpus == 0:
            problems.append("vllm_mode server needs rollout_gpus (the GPUs of `trl vllm-serve`)")
        else:
            share_ = share if colocated else SERVER_MEMORY_SHARE
            line, problem = _vllm("rollout engine", size, share_, layout.gpu_memory_gib, max(tp, 1), context)
            engines.append(line)
            problems += [problem] if problem else []
    if isinstance(config, VPOConfig) and parse_spec(config.reasoner)[0] == "openai":
        if layout.reasoner_gpus == 0:
            problems.append("an openai: reasoner needs reasoner_gpus (the GPUs of its `vllm serve`)")
        else:
            model = parse_spec(config.reasoner)[1].split("@", 1)[0]
            line, problem = _vllm(
                "reasoner", model_size(model), SERVER_MEMORY_SHARE, layout.gpu_memory_gib, 1, reasoner_context(config)
            )
            engines.append(line)
            problems += [problem] if problem else []
    nodes, commands = _nodes_and_commands(config, layout, training, stage, recipe)
    return Plan(table, _gib(host), engines, nodes, commands, problems)


def report(plan_: Plan, layout: LayoutConfig, *, title: str) -> str:
    gpus = sum(int(m.group(2)) - int(m.group(1)) + 1 for m in re.finditer(r"GPUs (\d+)-(\d+)", "\n".join(plan_.nodes)))
    nodes = len({line.split(" (")[0] for line in plan_.nodes})
    lines = [title, f"layout: {nodes} node(s), {gpus} GPUs of {layout.gpu_memory_gib:g} GiB"]
    lines += [f"  {line}" for line in plan_.nodes]
    lines.append("per training GPU (GiB):")
    lines += [f"  {item:<32}{gib:8.2f}  {note}" for item, gib, note in plan_.training]
    total = sum(g for _, g, _ in plan_.training)
    lines.append(f"  {'total':<32}{total:8.2f}  of {layout.gpu_memory_gib:g}")
    if plan_.host_gib:
        lines.append(f"host memory of a training node: {plan_.host_gib:.1f} GiB of {layout.cpu_memory_gib:g}")
    lines += [f"{line}" for line in plan_.engines]
    lines.append("launch (the launcher sets the $HOST variables; recipes name them as ${...}):")
    lines += [f"  {c}" for c in plan_.commands]
    lines.append("fits" if plan_.fits else "DOES NOT FIT:\n" + "\n".join(f"  - {p}" for p in plan_.problems))
    return "\n".join(lines)


def fill_hosts(config: Any) -> None:
    """Replace `${VAR}` in the fields that name hosts (the rollout server, reasoner and judge specs and their option
    keys) with the environment's values; an unset variable is an error naming it and the field."""

    def fill(name: str, value: str) -> str:
        missing = [a or b for a, b in _HOST_VARIABLE.findall(value) if (a or b) not in os.environ]
        if missing:
            raise SystemExit(
                f"error: {name} names ${{{missing[0]}}}, which is not set: the launcher sets it to that role's host "
                "(python -m rapid_agent.rl plan --config RECIPE prints the layout)"
            )
        return os.path.expandvars(value)

    for name in ("vllm_server_host", "vllm_server_base_url", "reasoner", "judge"):
        value = getattr(config, name, None)
        if isinstance(value, str):
            setattr(config, name, fill(name, value))
    if isinstance(getattr(config, "extra_reasoners", None), list):
        config.extra_reasoners = [fill("extra_reasoners", s) for s in config.extra_reasoners]
    for name in ("reasoner_options", "judge_options"):
        options = getattr(config, name, None)
        if isinstance(options, dict):
            setattr(config, name, {fill(name, k): v for k, v in options.items()})
