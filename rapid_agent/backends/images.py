"""Images as data URLs, and requests as OpenAI-style chat messages that carry them.

Both the OpenAI-compatible client and vLLM's offline `LLM.chat` take images as `image_url` content parts; a
base64 data URL works with every server version and needs no file or web server, so it is the one transport used.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

    from rapid_agent.backends.base import ChatRequest

ImageFormat = Literal["PNG", "JPEG"]

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}


def image_to_data_url(image: Image.Image, fmt: ImageFormat = "PNG", *, jpeg_quality: int = 90) -> str:
    """Encode a PIL image as a `data:image/...;base64,` URL.

    PNG is lossless, so the model sees exactly the pixels the caller had; JPEG is smaller for photographs.
    """
    fmt = fmt.upper()  # type: ignore[assignment]
    if fmt not in _MIME:
        raise ValueError(f"image format must be one of {sorted(_MIME)}, got {fmt!r}")
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        # JPEG has no alpha or palette; dropping them here beats a PIL OSError deep inside a batch.
        image = image.convert("RGB")
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, format="JPEG", quality=jpeg_quality)
    else:
        image.save(buf, format="PNG")
    return f"data:{_MIME[fmt]};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def data_url_to_bytes(url: str) -> tuple[str, bytes]:
    """Split a base64 data URL into its MIME type and decoded bytes (the inverse of `image_to_data_url`)."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise ValueError(f"not a base64 data URL: {url[:40]!r}...")
    try:
        return head[len("data:") : -len(";base64")], base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"data URL payload is not valid base64: {exc}") from exc


def openai_messages(request: ChatRequest, *, image_format: ImageFormat = "PNG") -> list[dict]:
    """The request as OpenAI chat messages; each image becomes an `image_url` part (data URL), in order, before the
    text."""
    parts = [{"type": "image_url", "image_url": {"url": image_to_data_url(im, image_format)}} for im in request.images]
    return request.messages(image_parts=parts)
