"""Evaluation on the paper's benchmarks: adapters (one per benchmark), the runner, scoring, the per-sample store, the
tables with their intervals (`stats`), paired comparisons of rows (`compare`) and the reasoner sweep (`sweep`).
`python -m rapid_agent.eval` is its command line; `rapid_agent.eval.evaluate` tabulates the demo world.

Nothing heavy is imported here, so the demo's `from rapid_agent.eval.evaluate import ...` stays light.
"""
