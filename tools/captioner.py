"""The captioner as a LangChain tool: image + question in, perception text (caption and/or tentative solution) out.

It builds the same request as the graph's perceive node (`rapid_agent.perception.captioner_request`); an agent
calls it with a path or data URL and gets the result as JSON. Requests go through the engine's micro-batcher, so concurrent calls share one
engine call.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field

from rapid_agent.backends import CAPTIONER_DEFAULTS, ChatRequest, Engine, GenerationConfig
from rapid_agent.backends.batching import get_batcher
from rapid_agent.inputs import DEFAULT_MAX_PIXELS
from rapid_agent.perception import DEFAULT_MODE, captioner_request, split_output
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts


class CaptionerInput(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Any = Field(description="the image: a file path, a data URL, raw bytes or a PIL image (or a list of them)")
    question: str = Field(description="the question the description should serve")


class CaptionerTool(BaseTool):
    """Describe an image for a text-only reasoner, without answering the question."""

    name: str = "describe_image"
    description: str = (
        "Describe an image for someone who cannot see it, focused on a question, and propose a tentative "
        "solution. Input: an image (path or data URL) and the question. Output: JSON with 'caption' and 'solution'."
    )
    args_schema: type[BaseModel] = CaptionerInput
    engine: Engine
    mode: str = DEFAULT_MODE
    gen: GenerationConfig = CAPTIONER_DEFAULTS
    prompts: Prompts = DEFAULT_PROMPTS
    max_pixels: int = DEFAULT_MAX_PIXELS

    def request(self, image: Any, question: str) -> ChatRequest:
        """The captioner request for `image` (one, or a list in order) and `question`."""
        images = image if isinstance(image, (list, tuple)) else [image]
        return captioner_request(images, question, self.mode, self.prompts, self.max_pixels)

    def result(self, completion: Any) -> dict:
        """The tool's output for one captioner completion: the text split into caption and solution, and counts."""
        parts = split_output(self.mode, completion.text)
        return {
            "caption": parts.caption,
            "solution": parts.solution,
            "text": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "latency_s": completion.latency_s,
        }

    def _run(self, image: Any, question: str, **_: Any) -> dict:
        return self.result(get_batcher(self.engine).submit(self.request(image, question), self.gen))

    async def _arun(self, image: Any, question: str, **_: Any) -> dict:
        return self.result(await get_batcher(self.engine).asubmit(self.request(image, question), self.gen))


def make_captioner_tool(engine: Engine, **settings: Any) -> CaptionerTool:
    """A captioner tool over `engine`; settings are `mode`, `gen`, `prompts`, `max_pixels`."""
    return CaptionerTool(engine=engine, **settings)
