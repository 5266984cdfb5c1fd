"""The RAPID LangGraph state machine: `get_graph()` returns the compiled graph, `build_graph()` the builder."""

from rapid_agent.graphs.graph import build_graph, get_graph
from rapid_agent.graphs.state import RapidInput, RapidState

__all__ = ["RapidInput", "RapidState", "build_graph", "get_graph"]
