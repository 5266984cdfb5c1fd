"""LangChain tools around the library's backends; the captioner tool is what the graph's perceive node calls."""

from rapid_agent.tools.captioner import CaptionerTool, make_captioner_tool

__all__ = ["CaptionerTool", "make_captioner_tool"]
