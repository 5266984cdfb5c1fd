"""Validated inputs: one sample is a question about one or more images (each a path, bytes, PIL image or data URL),
with an optional gold answer and multiple-choice options. Every failure names the field it is about.

Images are decoded here and only here, for inference and training alike (`load_image`): transparent pixels are laid
on white (a transparent PNG must not turn black), images larger than the pixel budget are downscaled, and images the
vision models cannot take (a side under 28 px is padded up; an aspect ratio beyond 200:1 is refused) fail alone, up
front, with a clear message instead of failing a whole engine batch.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

#: default pixel budget: larger images are downscaled (aspect kept) before they reach any captioner
DEFAULT_MAX_PIXELS = 1280 * 28 * 28
#: the smallest side and the widest aspect ratio Qwen-style vision encoders accept (14 px patches merged 2 x 2)
MIN_SIDE = 28
MAX_ASPECT_RATIO = 200
#: default bound on a question's length: a megabyte of text is a mistake, not a question
DEFAULT_MAX_QUESTION_CHARS = 20_000
#: most images one sample may carry (MMMU questions hold up to 7)
MAX_IMAGES = 16


class ImageError(ValueError):
    """An image that cannot be used; the message says why (missing, empty, corrupt, unsupported type)."""


def load_image(value: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `value` into an RGB PIL image (transparency laid on white), downscaled to at most `max_pixels` pixels
    and padded to at least `MIN_SIDE` pixels a side. Raises `ImageError` saying why an image cannot be used."""
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
    elif isinstance(value, str) and value.lower().startswith(("http://", "https://")):
        raise ImageError(
            f"remote image URLs are not fetched: {value[:100]!r}; download the image and pass its path or bytes"
        )
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
    ratio = max(image.width, image.height) / min(image.width, image.height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(
            f"image is {image.width}x{image.height}: its aspect ratio {ratio:.0f}:1 exceeds the {MAX_ASPECT_RATIO}:1 "
            "vision models accept"
        )
    image = to_rgb(image)
    if max_pixels and image.width * image.height > max_pixels:
        scale = (max_pixels / (image.width * image.height)) ** 0.5
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    if min(image.size) < MIN_SIDE:
        padded = Image.new("RGB", (max(image.width, MIN_SIDE), max(image.height, MIN_SIDE)), "white")
        padded.paste(image, (0, 0))
        image = padded
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white. `convert("RGB")` alone keeps the colour under transparent
    pixels, which is black in most PNGs: a diagram drawn on a transparent background would turn into a black square."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


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
    """One question about one or more images. Validate with `Sample.model_validate(data, context={"max_pixels": N,
    "max_question_chars": M})`; the input may name one `image` or a list of `images`, decoded here."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    question: str = Field(description="the question, in words")
    images: list[Image.Image] = Field(default_factory=list, description="paths, bytes, PIL images or data URLs")
    answer: str | None = Field(default=None, description="gold answer; enables scoring")
    choices: list[str] = Field(default_factory=list, description="multiple-choice options, in letter order")
    id: str | None = Field(default=None, description="sample id carried into results")

    @property
    def image(self) -> Image.Image | None:
        """The first image (None without images)."""
        return self.images[0] if self.images else None

    @model_validator(mode="before")
    @classmethod
    def _one_or_many_images(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "image" not in data:
            return data
        data = dict(data)
        image = data.pop("image")
        if data.get("images") not in (None, []):
            if image is not None:
                raise ValueError("give `image` (one) or `images` (several), not both")
        else:
            data["images"] = [] if image is None else [image]
        return data

    @field_validator("question", mode="before")
    @classmethod
    def _question_text(cls, value: Any, info: ValidationInfo) -> str:
        if not isinstance(value, str):
            raise ValueError(f"question must be text, got {type(value).__name__}")
        if not value.strip():
            raise ValueError("question is empty")
        limit = (info.context or {}).get("max_question_chars", DEFAULT_MAX_QUESTION_CHARS)
        if len(value) > limit:
            raise ValueError(f"question is {len(value):,} characters long; the limit is {limit:,}")
        return value.strip()

    @field_validator("images", mode="before")
    @classmethod
    def _load_images(cls, value: Any, info: ValidationInfo) -> list[Image.Image]:
        if value is None:
            return []
        if isinstance(value, (str, bytes, bytearray, Path, Image.Image)) or not isinstance(value, (list, tuple)):
            raise ValueError(f"images must be a list of images, got {type(value).__name__}; use `image` for one")
        if len(value) > MAX_IMAGES:
            raise ValueError(f"{len(value)} images is more than the {MAX_IMAGES} a sample may carry")
        max_pixels = (info.context or {}).get("max_pixels", DEFAULT_MAX_PIXELS)
        images = []
        for i, item in enumerate(value):
            try:
                images.append(load_image(item, max_pixels=max_pixels))
            except ImageError as exc:
                raise ValueError(f"image {i + 1} of {len(value)}: {exc}" if len(value) > 1 else str(exc)) from None
        return images

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_text(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).strip()
        if not text:
            raise ValueError("answer is empty; omit it to skip scoring")
        return text

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_list(cls, value: Any) -> list[str]:
        # a string is a sequence too: "red" would silently become the three options r, e, d
        if value is None:
            return []
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ValueError(f"choices must be a list of options, got {type(value).__name__} {str(value)[:60]!r}")
        if len(value) > 26:
            raise ValueError(f"{len(value)} choices is more than the 26 option letters A-Z")
        options = [str(c).strip() for c in value]
        if any(not c for c in options):
            raise ValueError("choices holds an empty option")
        return options
