"""The whole RAPID pipeline as a building block of other LangChain/LangGraph applications.

    tool = as_tool(RapidContext(captioner="openai:qwen2.5-vl@http://gpu:8000/v1", reasoner="openai:qwen3@..."))
    agent_model.bind_tools([tool])                 # a tool-calling agent asks it about an image

    builder.add_node("vision", as_node(context, inputs={"image": "photo", "question": "ask"},
                                       outputs={"prediction": "vision_answer"}))   # a node of your own graph

The tool takes an image (a file path or a data URL, what a model can write in a tool call) and a question, runs the
compiled graph and returns JSON the agent can read: the answer, the reasoner's words, the description. A bad input
comes back to the agent as an error message it can act on, not as an exception that ends the agent's run. The node
maps your state's keys onto the graph's and back; it runs the graph as a subgraph (same checkpointer, its own
namespace, streamed with `subgraphs=True`). Both pass the caller's callbacks on, so a traced agent shows the RAPID
run under the tool call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from rapid_agent.config import RapidContext

#: what the tool returns from the final state
TOOL_KEYS = ("prediction", "reasoner_output", "caption", "solution", "mode", "errors")


class RapidToolInput(BaseModel):
    image: str = Field(description="the image: a file path or a data URL ('data:image/png;base64,...')")
    question: str = Field(description="the question about the image, in words")
    choices: list[str] | None = Field(default=None, description="the options of a multiple-choice question, in order")


class RapidTool(BaseTool):
    """Answer a question about an image with RAPID: a vision model describes it, a reasoning model answers."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "look_at_image"
    description: str = (
        "Answer a question about an image. A vision model describes the image with the question in mind, then a "
        "reasoning model answers from that description. Input: the image (a file path or data URL) and the "
        "question (and its options, for multiple choice). Output: JSON with 'answer', the reasoning and the "
        "description of the image."
    )
    args_schema: type[BaseModel] = RapidToolInput
    context: RapidContext = Field(default_factory=RapidContext)
    handle_tool_error: bool = True  # a bad image or question goes back to the agent as a message

    def _sample(self, image: str, question: str, choices: list[str] | None) -> dict:
        return {"image": image, "question": question, "choices": choices or []}

    @staticmethod
    def _reply(state: dict) -> str:
        out = {key: state.get(key) for key in TOOL_KEYS if state.get(key) not in (None, [])}
        answer = out.pop("prediction", None)
        choices = state.get("choices") or []
        if answer is not None and len(answer) == 1 and "A" <= answer <= "Z" and ord(answer) - 65 < len(choices):
            out = {"option": choices[ord(answer) - 65], **out}  # the letter's text, so the agent need not look it up
        return json.dumps({"answer": answer, **out})

    def _run(
        self,
        image: str,
        question: str,
        choices: list[str] | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> str:
        from rapid_agent.graphs import get_graph

        config: RunnableConfig = {"callbacks": run_manager.get_child()} if run_manager else {}
        try:
            state = get_graph().invoke(self._sample(image, question, choices), config, context=self.context)
        except (ValueError, TypeError) as exc:  # the input's fault: the agent can fix it
            raise ToolException(str(exc)) from exc
        return self._reply(state)

    async def _arun(
        self,
        image: str,
        question: str,
        choices: list[str] | None = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> str:
        from rapid_agent.graphs import get_graph

        config: RunnableConfig = {"callbacks": run_manager.get_child()} if run_manager else {}
        try:
            state = await get_graph().ainvoke(self._sample(image, question, choices), config, context=self.context)
        except (ValueError, TypeError) as exc:
            raise ToolException(str(exc)) from exc
        return self._reply(state)


def as_tool(context: RapidContext | None = None, **settings: Any) -> RapidTool:
    """The pipeline as a LangChain tool; `settings` are `name`, `description`, or RapidContext fields
    (`reasoner="openai:..."`)."""
    tool_fields = {k: settings.pop(k) for k in list(settings) if k in ("name", "description", "handle_tool_error")}
    context = context or RapidContext()
    if settings:
        context = context.replace(**settings)
    return RapidTool(context=context, **tool_fields)


def as_node(
    context: RapidContext | None = None,
    *,
    inputs: Mapping[str, str] | None = None,
    outputs: Mapping[str, str] | None = None,
    name: str = "rapid",
) -> RunnableLambda:
    """A node for your own graph. `inputs` maps the graph's keys to your state's (`{"image": "photo"}`; unmapped
    keys keep their names), `outputs` maps result keys to yours (default: `prediction`, `correct`, `errors` as
    they are). Works with `add_node(name, node)` in sync and async graphs."""
    from rapid_agent.graphs import get_graph

    context = context or RapidContext()
    take = {"image": "image", "images": "images", "question": "question", "answer": "answer", "choices": "choices"}
    take.update(inputs or {})
    give = dict(outputs or {"prediction": "prediction", "correct": "correct", "errors": "errors"})
    graph = get_graph()

    def sample(state: Mapping[str, Any]) -> dict:
        return {ours: state[theirs] for ours, theirs in take.items() if state.get(theirs) is not None}

    def update(result: dict) -> dict:
        return {theirs: result.get(ours) for ours, theirs in give.items()}

    def run(state: Mapping[str, Any], config: RunnableConfig) -> dict:
        return update(graph.invoke(sample(state), config, context=context))

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict:
        return update(await graph.ainvoke(sample(state), config, context=context))

    return RunnableLambda(run, afunc=arun, name=name)
