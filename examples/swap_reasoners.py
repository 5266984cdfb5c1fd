"""One compiled graph, several reasoners: the captioner's text stays the same, only the reasoner changes.

    python examples/swap_reasoners.py

Uses stand-in engines so it runs anywhere in a second; replace the specs with real ones
(`hf:Qwen/Qwen3-8B`, `openai:gpt-oss-120b@http://localhost:8000/v1`, a LangChain chat model...).
"""

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from PIL import Image, ImageDraw

from rapid_agent import RapidContext
from rapid_agent.backends.stand_in import FunctionEngine, ScriptedEngine
from rapid_agent.graphs import get_graph


def main() -> None:
    image = Image.new("RGB", (112, 112), "white")
    ImageDraw.Draw(image).ellipse((10, 10, 40, 40), fill="red")
    sample = {"image": image, "question": "How many red circles are there?", "answer": "1"}

    captioner = ScriptedEngine(["<caption>1 red circle.</caption><solution>One circle. \\boxed{1}</solution>"])
    reasoners = {
        "copies the tentative solution": FunctionEngine(lambda r: "The solution says 1. \\boxed{1}"),
        "ignores it and guesses": FunctionEngine(lambda r: "\\boxed{2}"),
        "a LangChain chat model": FakeListChatModel(responses=["There is one circle, so \\boxed{1}."]),
    }
    graph = get_graph()  # compiled once
    base = RapidContext(captioner=captioner, reasoner=next(iter(reasoners.values())))
    for name, reasoner in reasoners.items():
        state = graph.invoke(sample, context=base.replace(reasoner=reasoner))
        print(f"{name:32s} -> {state['prediction']!s:3s} correct={state['correct']}  ({state['engines']['reasoner']})")


if __name__ == "__main__":
    main()
