"""An agent with memory that uses RAPID as its vision tool: its chat model decides to look at an image, RAPID
(captioner describes, reasoner answers) does, and the agent replies. The agent graph has a checkpointer, so a
second turn on the same thread sees the first.

    python examples/agent.py
    python examples/agent.py --captioner openai:qwen2.5-vl-7b@http://gpu:8000/v1 --reasoner openai:qwen3-8b@http://gpu:8001/v1

Offline by default: stand-in engines, and a rule-based stand-in for the agent's chat model
(`rapid_agent.tools.stand_in.VisionToolCaller`). Any chat model with tool calling takes its place
(`ChatOpenAI(...)`, `init_chat_model(...)`); `--trace run.jsonl` shows the tool call with the RAPID run under it.
"""

import argparse
import tempfile
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from PIL import Image, ImageDraw

from rapid_agent import RapidContext
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.tools import as_tool
from rapid_agent.tools.stand_in import VisionToolCaller
from rapid_agent.tracing import setup_tracing


def build_agent(model: BaseChatModel, tools: list[BaseTool], checkpointer=None):
    """The smallest tool-calling agent: the model speaks or calls tools, tools answer, the model speaks again."""
    bound = model.bind_tools(tools)

    def call_model(state: MessagesState) -> dict:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=checkpointer, name="vision-agent")


def stand_in_context() -> RapidContext:
    """Engines that need no model: the captioner counts the red circles it is shown, the reasoner reads them."""

    def describe(request) -> str:
        red = sum(1 for x, y in ((20, 20), (60, 20), (20, 60)) if request.image.getpixel((x, y)) == (255, 0, 0))
        return f"<caption>{red} red circles on a white background.</caption><solution>\\boxed{{{red}}}</solution>"

    def read(request) -> str:
        count = request.prompt.split("<caption>")[-1] if "<caption>" in request.prompt else request.prompt
        digits = [w for w in count.replace(".", " ").split() if w.isdigit()]
        return f"The description counts {digits[0]}. \\boxed{{{digits[0]}}}" if digits else "\\boxed{0}"

    return RapidContext(
        captioner=FunctionEngine(describe, spec="fn:counter"), reasoner=FunctionEngine(read, spec="fn:reader")
    )


def picture(path: Path, circles: int) -> Path:
    image = Image.new("RGB", (80, 80), "white")
    for x, y in ((20, 20), (60, 20), (20, 60))[:circles]:
        ImageDraw.Draw(image).ellipse((x - 8, y - 8, x + 8, y + 8), fill=(255, 0, 0))
    image.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captioner", help="captioner spec (default: a stand-in that counts red circles)")
    parser.add_argument("--reasoner", help="reasoner spec (default: a stand-in that reads the description)")
    parser.add_argument("--trace", help="console, otlp or FILE.jsonl: trace the agent's runs")
    args = parser.parse_args()
    setup_tracing(args.trace)

    context = stand_in_context()
    if args.captioner:
        context = context.replace(captioner=args.captioner)
    if args.reasoner:
        context = context.replace(reasoner=args.reasoner)
    agent = build_agent(VisionToolCaller(), [as_tool(context)], checkpointer=InMemorySaver())
    folder = Path(tempfile.mkdtemp())
    thread = {"configurable": {"thread_id": "user-1"}}
    for circles in (2, 3):
        image = picture(folder / f"circles{circles}.png", circles)
        state = agent.invoke({"messages": [("user", f"How many red circles are in {image}?")]}, thread)
        print(f"user: how many red circles in {image.name}?  agent: {state['messages'][-1].content}")
    print(f"the thread remembers {len(state['messages'])} messages")


if __name__ == "__main__":
    main()
