"""LangChain tools around the library: the captioner (what the graph's perceive node calls) and the whole pipeline
(`as_tool` for agents, `as_node` for your own graph). `stand_in` holds a rule-based tool-calling chat model for
offline tests and examples."""

from rapid_agent.tools.captioner import CaptionerTool, make_captioner_tool
from rapid_agent.tools.pipeline import RapidTool, as_node, as_tool

__all__ = ["CaptionerTool", "RapidTool", "as_node", "as_tool", "make_captioner_tool"]
