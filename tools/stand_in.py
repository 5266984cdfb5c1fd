"""A stand-in tool-calling chat model, so that agents built around RAPID run offline in tests and examples.

`VisionToolCaller` plays the agent's LLM by rule: given a user message that names an image (a path ending in an
image suffix, or a data URL) it calls the vision tool with that image and the rest of the message as the question;
given the tool's reply it answers with the tool's answer. Swap in any chat model that supports `bind_tools`
(`ChatOpenAI`, `init_chat_model(...)`) for a real agent.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

_IMAGE = re.compile(r"(data:image/[\w.+-]+;base64,[A-Za-z0-9+/=]+|\S+\.(?:png|jpe?g|webp|gif|bmp))", re.IGNORECASE)


class VisionToolCaller(BaseChatModel):
    """Calls `tool_name` on the image the user names, then answers with what the tool said."""

    tool_name: str = "look_at_image"
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "vision-tool-caller"

    def bind_tools(self, tools: Any, **kwargs: Any) -> VisionToolCaller:
        names = [getattr(t, "name", None) for t in tools]
        if self.tool_name not in names:
            raise ValueError(f"tool {self.tool_name!r} is not among the bound tools {names}")
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        last = messages[-1]
        if isinstance(last, ToolMessage):
            message = AIMessage(content=self._answer(last.content))
        else:
            message = self._tool_call(last)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _tool_call(self, message: BaseMessage) -> AIMessage:
        text = message.content if isinstance(message, HumanMessage) and isinstance(message.content, str) else ""
        found = _IMAGE.search(text)
        if not found:
            return AIMessage(content="Which image should I look at? Give me its path.")
        question = (text[: found.start()] + text[found.end() :]).strip(" :,\n") or "What is in this image?"
        self.calls += 1
        call = {
            "name": self.tool_name,
            "args": {"image": found.group(1), "question": question},
            "id": f"call_{self.calls}",
        }
        return AIMessage(content="", tool_calls=[call])

    @staticmethod
    def _answer(content: Any) -> str:
        try:
            reply = json.loads(content)
        except (TypeError, ValueError):
            return f"I could not look at the image: {content}"
        if reply.get("answer") is None:
            return f"I could not tell from the image: {reply.get('errors') or reply.get('reasoner_output')}"
        return f"The answer is {reply['answer']}."
