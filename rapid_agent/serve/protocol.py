"""The OpenAI chat-completions protocol as pydantic models: what clients send, what the server answers, and the
error shape. Mirrors the fields OpenAI clients use; RAPID's own parts travel in an extra `rapid` field both ways
(request: the gold answer and options; response: caption, tentative solution, parsed answer, verdict).

Unknown request fields are ignored, as most OpenAI-compatible servers do (clients send `user`, `logprobs`, ...);
fields the server cannot honour in a way the client would notice (`n` > 1) are refused.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: the largest seed every engine takes: torch's generators and vLLM's sampling params hold a signed 64-bit integer
MAX_SEED = 2**63 - 1

# -- requests -------------------------------------------------------------------------------------------------------


class ImageURL(BaseModel):
    url: str = Field(description="a data URL, bare base64, or (when the server allows it) an http(s) URL")
    detail: str | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _url_string(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value  # some clients send the URL bare


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class RapidRequest(BaseModel):
    """RAPID's request extra: a gold answer to score against, and multiple-choice options in letter order."""

    model_config = ConfigDict(extra="forbid")

    answer: str | None = Field(default=None, description="gold answer; the response then carries the verdict")
    choices: list[str] = Field(default_factory=list, description="multiple-choice options, in letter order")


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="sampling seed; engines take a non-negative 64-bit integer"
    )
    n: int = Field(default=1, description="only 1 is supported")
    rapid: RapidRequest | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"only n=1 is supported, got {value!r}")
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


# -- responses ------------------------------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class RapidResult(BaseModel):
    """RAPID's response extra: what the captioner saw and what the answer check found."""

    mode: str | None = None
    engines: dict[str, str] = Field(default_factory=dict)
    captioner_output: str | None = None
    caption: str | None = None
    solution: str | None = Field(default=None, description="the captioner's tentative solution")
    perception_missing: list[str] = Field(default_factory=list)
    prediction: str | None = Field(default=None, description="the answer parsed from the reasoner's output")
    correct: bool | None = Field(default=None, description="set when the request carried a gold answer")
    verdict: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="latency and token counts per role")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    rapid: RapidResult


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    rapid: RapidResult | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rapid-agent"
    rapid: dict[str, str | None] = Field(description="the pipeline behind the name: captioner, reasoner, mode")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- errors ---------------------------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
