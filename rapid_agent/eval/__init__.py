"""Evaluation through the RAPID graph: adapters (one per benchmark, and the synthetic world the demo measures on),
the runner, scoring, the per-sample store, the summary and its tables with their intervals (`stats`), paired
comparisons of rows (`compare`) and the reasoner sweep (`sweep`). One runner, one summary and one table writer serve
the paper's benchmarks and the demo alike. `python -m rapid_agent.eval` is its command line.

Nothing heavy is imported here, so `from rapid_agent.eval.runner import ...` stays light.
"""
