"""OpenTelemetry tracing: the names callers already use, now living in `rapid_agent.telemetry`.

from rapid_agent.tracing import setup_tracing, add_trace_argument   # every command: --trace console|otlp|FILE
from rapid_agent.tracing import OTelCallbackHandler, enable_tracing, read_trace
"""

from rapid_agent.telemetry import *  # noqa: F403
from rapid_agent.telemetry import __all__  # noqa: F401
