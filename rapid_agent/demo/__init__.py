"""The offline RAPID demo: `python -m rapid_agent demo [--quick] [--out DIR] [--seeds N]`.

It builds the synthetic world, trains (once, then caches) a tiny Qwen2.5-VL captioner on it, measures the captioner
alone and the decoupled pipeline with the bundled SmolLM2-135M reasoner on a held-out test split, runs a short VPO
training of the captioner against that reasoner, measures again, and writes a report folder. Every measurement of
accuracy is `rapid_agent.eval`'s runner over the world adapter (`rows`), summarised and tabulated as the paper's
benchmarks are. Modules: `config` (settings), `sft` (supervised training), `captioner` (cached build), `cache`,
`vpo`, `trace`, `rows` (the table's rows as runner runs), `effects` (the claims as paired differences), `report`,
`run` (the orchestration), `command` (its command line).
"""

from rapid_agent.demo.config import DEMO_PROMPTS, DemoConfig
from rapid_agent.demo.run import run_demo

__all__ = ["DEMO_PROMPTS", "DemoConfig", "run_demo"]
