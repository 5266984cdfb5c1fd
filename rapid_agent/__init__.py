"""rapid-agent: multimodal reasoning by perception-reasoning decoupling (RAPID).

A vision-language captioner turns image + question into text; a frozen, hot-swappable text-only reasoner answers
from that text; the answer is scored against the gold one; and the VPO trainer (`python -m rapid_agent.rl`) uses
that correctness as the reward that aligns the captioner with the reasoner.
"""

import rapid_agent.models  # noqa: F401  (registers the built-in model names, e.g. hf:smollm2-135m-instruct)
from rapid_agent.answers import Verdict, check_answer, extract_answer
from rapid_agent.api import asolve_batch, solve, solve_batch
from rapid_agent.backends import ChatRequest, Completion, Engine, EngineError, GenerationConfig, load_engine
from rapid_agent.config import DEFAULT_CAPTIONER, DEFAULT_REASONER, RapidContext
from rapid_agent.perception import MODES
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CAPTIONER",
    "DEFAULT_PROMPTS",
    "DEFAULT_REASONER",
    "MODES",
    "ChatRequest",
    "Completion",
    "Engine",
    "EngineError",
    "GenerationConfig",
    "Prompts",
    "RapidContext",
    "Verdict",
    "asolve_batch",
    "check_answer",
    "extract_answer",
    "load_engine",
    "solve",
    "solve_batch",
]
