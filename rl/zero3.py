"""Frozen models beside a ZeRO-3 policy: loaded whole, outside ZeRO-3's partitioning.

Under DeepSpeed ZeRO-3 the training config registers its DeepSpeed settings with transformers as soon as it is built
(transformers/training_args.py `__post_init__`, ~1704-1721), and from then on every `from_pretrained` builds its
model inside `deepspeed.zero.Init` (transformers/modeling_utils.py ~3829-3841; ~1435 for `_from_config`), which
partitions each parameter over the training processes as it is created. The policy wants that; an `hf:` reasoner
or judge does not: it calls `generate` outside DeepSpeed's engine, on its empty shards. A `device_map` is refused
outright under ZeRO-3 (transformers/integrations/accelerate.py ~135-136), so the `device_map: auto` once suggested
for large frozen models cannot work there either.

So frozen models load under `outside_zero3_init()` (whole, on the process's own device), and the configs refuse
a `device_map` for them under ZeRO-3 with what to use instead (`check_frozen_placement`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping


def zero3_enabled() -> bool:
    """Whether models built now would be partitioned by ZeRO-3."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


@contextlib.contextmanager
def outside_zero3_init() -> Iterator[None]:
    """Models built inside are whole: transformers' switch for `zero.Init` is off, and back on after."""
    from transformers.integrations import deepspeed as hf_deepspeed

    # transformers reads the registered config through this module-level weak reference; unsetting it is its own
    # public call, restoring it has none (accelerate's zero3_init_context_manager re-registers a stage-3 config,
    # which transformers still reads as ZeRO-3)
    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def check_frozen_placement(field_name: str, spec: str, options: Mapping) -> None:
    """Refuse a `device_map` for an in-process (`hf:`) frozen model under ZeRO-3, saying what to use instead."""
    if not spec.startswith("hf:") or "device_map" not in options or not zero3_enabled():
        return
    raise ValueError(
        f"{field_name} gives {spec!r} device_map={options['device_map']!r}, which cannot work under DeepSpeed "
        "ZeRO-3: transformers refuses a device_map there, and each training process would spread its own copy over "
        "the node's GPUs. Serve the model with `vllm serve MODEL` and name it 'openai:MODEL@http://HOST:PORT/v1' (as "
        "the 32B/72B recipes do), or drop device_map: an hf: model then loads whole on each process's own GPU."
    )
