"""One pixel budget for every path an image takes into a Qwen-style vision model.

A Qwen2/2.5-VL processor resizes an image to a grid of `patch_size * merge_size` pixel cells whose area fits
`[min_pixels, max_pixels]` (`smart_resize`), and the image becomes one `<|image_pad|>` per merged cell. Two
processors that disagree on `max_pixels` give the same image different token counts: a 1920x1080 image decoded at
the library's budget (1280 x 28 x 28) is 1222 image tokens at that budget and 1296 at the checkpoint's 12845056,
because `smart_resize` rounds up when the rounded area fits and floors when it does not. So every path caps its
processor at the one budget (`cap_pixel_budget`), and images handed to an engine whose processor we do not control
(TRL's vLLM) are first resized to the grid ours uses (`fit_to_grid`), which any processor with a budget at least as
large leaves alone.

vLLM 0.34 counts image tokens the same way (vllm/model_executor/models/qwen2_vl.py, `_get_vision_info`, ~995-1040:
transformers' `smart_resize` with factor patch_size * merge_size and the size edges as the pixel bounds).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PIL import Image

#: the library's one pixel budget (what `rapid_agent.inputs.load_image` decodes to), re-exported for engines
from rapid_agent.inputs import DEFAULT_MAX_PIXELS

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "cap_pixel_budget",
    "checkpoint_max_pixels",
    "fit_to_grid",
    "grid_size",
    "image_tokens",
    "pixel_bounds",
]


def _image_processor(processor: Any) -> Any:
    return getattr(processor, "image_processor", processor)


def _edge(size: Any, name: str) -> int | None:
    """One edge of a processor's `size`: a dict in older transformers, a `SizeDict` dataclass in 5.x."""
    return size.get(name) if isinstance(size, dict) else getattr(size, name, None)


def pixel_bounds(processor: Any) -> tuple[int, int, int, int]:
    """(factor, merge_size, min_pixels, max_pixels) of a Qwen-style (image) processor."""
    ip = _image_processor(processor)
    size = getattr(ip, "size", None)
    patch, merge = int(getattr(ip, "patch_size", 14)), int(getattr(ip, "merge_size", 2))
    low = _edge(size, "shortest_edge") or getattr(ip, "min_pixels", None)
    high = _edge(size, "longest_edge") or getattr(ip, "max_pixels", None)
    if not low or not high:
        raise ValueError(f"{type(ip).__name__} has no Qwen-style pixel bounds (size {size!r})")
    return patch * merge, merge, int(low), int(high)


def cap_pixel_budget(processor: Any, max_pixels: int | None) -> int:
    """Lower the processor's `max_pixels` to `max_pixels` (never raise it: a checkpoint is not trained for more);
    returns the budget now in force. A processor without Qwen-style bounds is left as it is (returns 0)."""
    ip = _image_processor(processor)
    try:
        _, _, _, own = pixel_bounds(ip)
    except ValueError:
        return 0
    budget = own if max_pixels is None else min(own, int(max_pixels))
    # transformers 5 reads `size.longest_edge` (and saves it); older releases read a `max_pixels` attribute
    size = ip.size
    ip.size = (
        {**size, "longest_edge": budget} if isinstance(size, dict) else dataclasses.replace(size, longest_edge=budget)
    )
    if getattr(ip, "max_pixels", None) is not None:
        ip.max_pixels = budget
    return budget


def grid_size(width: int, height: int, processor: Any, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) the processor resizes a `width` x `height` image to; `max_pixels` overrides its budget."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # no torchvision

    factor, _, low, high = pixel_bounds(processor)
    h, w = smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=max_pixels or high)
    return w, h


def image_tokens(width: int, height: int, processor: Any, max_pixels: int | None = None) -> int:
    """How many image tokens (`<|image_pad|>`) a `width` x `height` image becomes."""
    factor, _, _, _ = pixel_bounds(processor)
    w, h = grid_size(width, height, processor, max_pixels)
    return (w // factor) * (h // factor)


def fit_to_grid(image: Image.Image, processor: Any) -> Image.Image:
    """`image` resized (bicubic, as the processor resizes) to the grid `processor` would use, so that any
    processor whose budget is at least as large gives it the same number of image tokens."""
    size = grid_size(image.width, image.height, processor)
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def checkpoint_max_pixels(model: str) -> int | None:
    """The `max_pixels` a checkpoint's saved image processor holds (read from its config file alone), or None
    when it has none or cannot be read here (a hub id not in the local cache)."""
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        config, _ = ImageProcessingMixin.get_image_processor_dict(str(model))
    except (OSError, ValueError):
        return None
    value = config.get("max_pixels") or (config.get("size") or {}).get("longest_edge")
    return int(value) if value else None
