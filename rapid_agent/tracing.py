"""OpenTelemetry tracing: the names callers already use, now living in `rapid_agent.telemetry`.

from rapid_agent.tracing import setup_tracing   # every command: --trace console|otlp|FILE (rapid_agent.cli_args)
from rapid_agent.tracing import OTelCallbackHandler, enable_tracing, read_trace
"""

from rapid_agent.telemetry import *  # noqa: F403
from rapid_agent.telemetry import __all__  # noqa: F401
