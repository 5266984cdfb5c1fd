"""Reading what OpenAI-compatible servers send back: a whole chat completion, or the chunks of a streamed one.

Servers differ from OpenAI's schema in ways that matter (content as a list of parts, usage counts as strings or
null, the thinking in `reasoning_content` or `reasoning`), and a broken proxy can send anything. The readers accept
every shape a real server sends and reject the rest with `MalformedResponse`, whose message names the field, so one
bad reply fails only its own sample and never turns into a TypeError further down the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rapid_agent.backends.base import redact


class MalformedResponse(ValueError):
    """A reply that is not a chat completion (or a chunk of one); the message names the field that is wrong."""


@dataclass
class ChatReply:
    """What one chat completion said, with every field checked and typed."""

    text: str
    reasoning: str = ""
    finish_reason: str | None = None
    refusal: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None


def read_completion(data: object) -> ChatReply:
    """The first choice of a `chat.completion` object (already JSON-decoded)."""
    body = _object(data, "response")
    choice = _object(_first_choice(body.get("choices")), "choices[0]")
    message = _object(choice.get("message"), "choices[0].message")
    text, reasoning_parts = _content(message.get("content"), "choices[0].message.content")
    prompt_tokens, completion_tokens = _usage(body.get("usage"))
    return ChatReply(
        text=text,
        reasoning=_reasoning(message, "choices[0].message") + reasoning_parts,
        finish_reason=_finish_reason(choice.get("finish_reason")),
        refusal=_optional_text(message.get("refusal"), "choices[0].message.refusal"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=body.get("model") if isinstance(body.get("model"), str) else None,
    )


@dataclass
class StreamReader:
    """Accumulates the chunks of a streamed chat completion (`chat.completion.chunk` objects, JSON-decoded)."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    #: whether the server sent a usage object (it does only when asked with `stream_options.include_usage`)
    saw_usage: bool = False
    chunks: int = 0

    def feed(self, data: object) -> str:
        """Take one chunk; return the answer text it adds ("" for a chunk of thinking, usage or bookkeeping)."""
        where = f"stream chunk {self.chunks}"
        self.chunks += 1
        chunk = _object(data, where)
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if chunk.get("usage") is not None:
            self.saw_usage = True
            self.prompt_tokens, self.completion_tokens = _usage(chunk["usage"])
        choices = chunk.get("choices")
        if choices is None or choices == []:  # the usage chunk, or a keep-alive
            return ""
        choice = _object(_first_choice(choices, where), f"{where}: choices[0]")
        delta = choice.get("delta")
        piece = ""
        if delta is not None:
            delta = _object(delta, f"{where}: choices[0].delta")
            piece, reasoning_parts = _content(delta.get("content"), f"{where}: choices[0].delta.content")
            self.text.append(piece)
            self.reasoning.append(_reasoning(delta, f"{where}: choices[0].delta") + reasoning_parts)
            self.refusal.append(_optional_text(delta.get("refusal"), f"{where}: choices[0].delta.refusal"))
        finish = _finish_reason(choice.get("finish_reason"))
        if finish is not None:
            self.finish_reason = finish
        return piece

    def result(self) -> ChatReply:
        """The whole reply. A stream that ends without a `finish_reason` was cut off (a server that died
        mid-stream closes the connection as if it were done), so that is an error, not a short answer."""
        if self.finish_reason is None:
            raise MalformedResponse(
                f"the stream ended after {self.chunks} chunk(s) and {len(''.join(self.text))} characters without a "
                "finish_reason: the server stopped mid-answer"
            )
        return ChatReply(
            text="".join(self.text),
            reasoning="".join(self.reasoning),
            finish_reason=self.finish_reason,
            refusal="".join(self.refusal),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            model=self.model,
        )


def count(value: object) -> int:
    """A token count as servers send it (an int, a float, a numeric string); anything else, or a negative or
    non-finite number, counts 0: a bad count must never crash a sample whose text is fine."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return 0
    if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedResponse(f"{where} is {_kind(value)}, not a JSON object")
    return value


def _first_choice(choices: object, where: str = "response") -> object:
    if not isinstance(choices, list):
        raise MalformedResponse(f"{where}: choices is {_kind(choices)}, not a list")
    if not choices:
        raise MalformedResponse(f"{where}: choices is empty (the server returned no completion)")
    return choices[0]


def _content(content: object, where: str) -> tuple[str, str]:
    """Answer text and thinking text from a message's content: a string, null, or a list of content parts."""
    if content is None:
        return "", ""
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        raise MalformedResponse(f"{where} is {_kind(content)}, not text or a list of parts")
    text, reasoning = [], []
    for i, part in enumerate(content):
        if isinstance(part, str):
            text.append(part)
            continue
        part = _object(part, f"{where}[{i}]")
        kind = part.get("type")
        if kind in ("text", "output_text"):
            text.append(_optional_text(part.get("text"), f"{where}[{i}].text"))
        elif kind in ("reasoning", "thinking"):
            reasoning.append(_optional_text(part.get(kind) or part.get("text"), f"{where}[{i}].{kind}"))
        # other parts (images, audio, tool calls) carry no answer text
    return "".join(text), "".join(reasoning)


def _reasoning(message: dict[str, Any], where: str) -> str:
    # vLLM's reasoning parsers and DeepSeek say `reasoning_content`; newer vLLM and OpenRouter say `reasoning`.
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if value:
            return value if isinstance(value, str) else _content(value, f"{where}.{key}")[0]
    return ""


def _optional_text(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedResponse(f"{where} is {_kind(value)}, not a string")
    return value


def _finish_reason(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _usage(usage: object) -> tuple[int, int]:
    if not isinstance(usage, dict):
        return 0, 0
    return count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    text = redact(repr(value), limit=None)  # masked before the cut, which could hide an echoed image's prefix
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"
