"""From a chat-completions request to a RAPID sample: the question is the text of the last user message, the
images are that message's `image_url` parts, the gold answer and options come from the `rapid` extra.

Images are checked here, before any engine sees them, so that a bad image is a 400 naming the message part, not an
error recorded after a batch: data URLs and bare base64 are decoded; http(s) URLs are fetched only when the server
allows it, within a size and time bound, and never from an internal address the server's allow-list does not name
(`rapid_agent.serve.fetch`); nothing a client sends is ever read as a server-side path. The pixel count
is read from the image header and refused above the server's limit before anything is decoded (a small PNG can
hold a huge image), then `rapid_agent.inputs.load_image` decodes and downscales it off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from rapid_agent.backends.images import data_url_to_bytes
from rapid_agent.config import RapidContext
from rapid_agent.inputs import MAX_IMAGES, ImageError, Sample, load_image
from rapid_agent.serve.config import ServeConfig
from rapid_agent.serve.errors import bad_request
from rapid_agent.serve.fetch import fetch_image
from rapid_agent.serve.protocol import ChatCompletionRequest, ImagePart, TextPart


@dataclass
class ImageRef:
    """One image part of the request and where it sits (`param`, for error messages)."""

    url: str
    param: str


def question_and_images(request: ChatCompletionRequest) -> tuple[str, list[ImageRef], str]:
    """The last user message's text, its image parts, and its place (`messages[i]`). System messages and earlier
    turns are not used: RAPID answers one question about the images at hand, with its own prompts."""
    for i in range(len(request.messages) - 1, -1, -1):
        message = request.messages[i]
        if message.role != "user":
            continue
        where = f"messages[{i}]"
        if isinstance(message.content, str):
            return message.content, [], where
        texts, images = [], []
        for j, part in enumerate(message.content or []):
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                images.append(ImageRef(part.image_url.url, f"{where}.content[{j}].image_url.url"))
        return "\n".join(texts), images, where
    raise bad_request(
        "messages: no user message; send the question (and its images) as a user message", param="messages"
    )


async def image_bytes(ref: ImageRef, config: ServeConfig) -> bytes:
    """The encoded image a part names: a base64 data URL, bare base64, or (when allowed) an http(s) URL."""
    url = ref.url.strip()
    if url.startswith("data:"):
        try:
            return data_url_to_bytes(url)[1]
        except ValueError as exc:
            raise bad_request(f"{ref.param}: {exc}", param=ref.param, code="invalid_image") from None
    if url.lower().startswith(("http://", "https://")):
        if not config.allow_remote_images:
            raise bad_request(
                f"{ref.param}: remote image URLs are not fetched by this server; send the image as a base64 data URL",
                param=ref.param,
                code="invalid_image",
            )
        return await fetch_image(url, ref.param, config)
    try:
        return base64.b64decode(url, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(
            f"{ref.param}: not a base64 data URL ('data:image/png;base64,...'), bare base64 or an http(s) URL",
            param=ref.param,
            code="invalid_image",
        ) from None


def check_pixels(raw: bytes, param: str, max_pixels: int) -> None:
    """Refuse an image whose header declares more than `max_pixels` pixels, before decoding a single one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                width, height = image.size
    except Image.DecompressionBombError as exc:
        raise bad_request(f"{param}: {exc}", param=param, code="image_too_large") from None
    except UnidentifiedImageError:  # PIL's message is the repr of our BytesIO: say what it means instead
        message = f"{param}: cannot decode the image: not a recognised image format (PNG, JPEG, GIF, WebP, ...)"
        raise bad_request(message, param=param, code="invalid_image") from None
    except Exception as exc:  # any decoder failure on client bytes is a bad image, never a server error
        message = f"{param}: cannot decode the image: {_describe(exc)}"
        raise bad_request(message, param=param, code="invalid_image") from None
    if width * height > max_pixels:
        raise bad_request(
            f"{param}: the image is {width}x{height} = {width * height:,} pixels; this server takes at most "
            f"{max_pixels:,}",
            param=param,
            code="image_too_large",
        )


#: how Python writes an object without a repr of its own (`<_io.BytesIO object at 0x7f...>`): nothing for a client
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _describe(exc: BaseException) -> str:
    """A decoder's complaint fit for the client: its message without object reprs, or its type when nothing is left."""
    text = _OBJECT_REPR.sub("the data", str(exc)).strip()
    return text or type(exc).__name__


def _decode(raw: bytes, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixel count was checked already
        return load_image(raw, max_pixels=max_pixels)


async def sample_from_request(
    request: ChatCompletionRequest, context: RapidContext, config: ServeConfig, *, pipeline: str
) -> dict:
    """The graph input for `request` under `context`: validated question, decoded images, answer and options.
    Raises `APIError` (400/413) naming the request field at fault."""
    question, refs, where = question_and_images(request)
    needs_images = context.mode != "none"
    if needs_images and not refs:
        raise bad_request(
            f"{where}: the last user message carries no image; model {pipeline!r} (perception mode "
            f"{context.mode!r}) needs one as an image_url part",
            param=where,
            code="missing_image",
        )
    if len(refs) > MAX_IMAGES:
        raise bad_request(f"{where}: {len(refs)} images; a question may carry at most {MAX_IMAGES}", param=where)
    images: list[Image.Image] = []
    for ref in refs if needs_images else []:
        raw = await image_bytes(ref, config)
        check_pixels(raw, ref.param, config.max_image_pixels)
        try:
            images.append(await asyncio.to_thread(_decode, raw, context.max_pixels))
        except ImageError as exc:
            raise bad_request(f"{ref.param}: {_describe(exc)}", param=ref.param, code="invalid_image") from None
        except Exception as exc:  # a decoder bug on crafted bytes (struct.error, SyntaxError, ...): still the image
            message = f"{ref.param}: cannot decode the image ({type(exc).__name__})"
            raise bad_request(message, param=ref.param, code="invalid_image") from None
    extra = request.rapid
    data = {
        "question": question,
        "images": images,
        "answer": extra.answer if extra else None,
        "choices": extra.choices if extra else [],
    }
    limits = {"max_pixels": context.max_pixels, "max_question_chars": context.max_question_chars}
    try:
        sample = Sample.model_validate(data, context=limits)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "input"
        param = f"{where}.content" if field == "question" else f"rapid.{field}"
        message = error["msg"].removeprefix("Value error, ")
        raise bad_request(f"{param}: {message}", param=param) from None
    return {"question": sample.question, "images": sample.images, "answer": sample.answer, "choices": sample.choices}
