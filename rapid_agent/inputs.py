"""Validated inputs: one sample is an image (path, bytes, PIL image or data URL) and a question, with an optional
gold answer and multiple-choice options. Every failure names the field it is about."""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: default pixel budget: larger images are downscaled (aspect kept) before they reach any captioner
DEFAULT_MAX_PIXELS = 1280 * 28 * 28


class ImageError(ValueError):
    """An image that cannot be used; the message says why (missing, empty, corrupt, unsupported type)."""


def load_image(value: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `value` into an RGB PIL image, downscaled to at most `max_pixels` pixels."""
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, (bytes, bytearray)):
        image = _decode(bytes(value), "raw bytes")
    elif isinstance(value, str) and value.startswith("data:"):
        header, _, payload = value.partition(",")
        if ";base64" not in header:
            raise ImageError("data URL images must be base64-encoded ('data:image/png;base64,...')")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageError(f"data URL is not valid base64: {exc}") from exc
        image = _decode(raw, "data URL")
    elif isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ImageError(f"image file not found: {str(path)!r}")
        if path.stat().st_size == 0:
            raise ImageError(f"image file is empty (0 bytes): {str(path)!r}")
        image = _decode(path.read_bytes(), repr(str(path)))
    else:
        raise ImageError(f"unsupported image type {type(value).__name__}; give a path, bytes, PIL image or data URL")
    if image.width == 0 or image.height == 0:
        raise ImageError(f"image has zero size ({image.width}x{image.height})")
    image = image.convert("RGB")
    if max_pixels and image.width * image.height > max_pixels:
        scale = (max_pixels / (image.width * image.height)) ** 0.5
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image


def _decode(raw: bytes, source: str) -> Image.Image:
    if not raw:
        raise ImageError(f"image from {source} is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()  # decode now: a truncated file must fail here, not inside a model
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image from {source}: {exc}") from exc
    return image


class Sample(BaseModel):
    """One question about one image. Validate with `Sample.model_validate(data, context={"max_pixels": N})`."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    question: str = Field(description="the question, in words")
    image: Image.Image | None = Field(default=None, description="path, bytes, PIL image or data URL")
    answer: str | None = Field(default=None, description="gold answer; enables scoring")
    choices: list[str] = Field(default_factory=list, description="multiple-choice options, in letter order")
    id: str | None = Field(default=None, description="sample id carried into results")

    @field_validator("question")
    @classmethod
    def _question_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is empty")
        return value.strip()

    @field_validator("image", mode="before")
    @classmethod
    def _load_image(cls, value: Any, info: ValidationInfo) -> Image.Image | None:
        if value is None:
            return None
        max_pixels = (info.context or {}).get("max_pixels", DEFAULT_MAX_PIXELS)
        return load_image(value, max_pixels=max_pixels)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_text(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).strip()
        if not text:
            raise ValueError("answer is empty; omit it to skip scoring")
        return text
