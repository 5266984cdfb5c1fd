"""`python -m rapid_agent serve`: RAPID pipelines behind an OpenAI-compatible chat-completions endpoint.

    from rapid_agent.serve import ServerThread, create_app
    app = create_app({"rapid": RapidContext(captioner="hf:...", reasoner="hf:...")})

`config` (settings, pipelines) needs nothing beyond the core; the app itself needs the `serve` extra
(`pip install rapid-agent[serve]`: fastapi, uvicorn, prometheus-client), so it is imported on first use.
"""

from __future__ import annotations

from typing import Any

from rapid_agent.serve.config import DEFAULT_MODEL_NAME, ServeConfig, load_pipelines_file, parse_pipeline

_LAZY = {
    "create_app": "rapid_agent.serve.app",
    "Pipeline": "rapid_agent.serve.pipeline",
    "ServerThread": "rapid_agent.serve.server",
    "run_server": "rapid_agent.serve.server",
}

__all__ = ["DEFAULT_MODEL_NAME", "ServeConfig", "load_pipelines_file", "parse_pipeline", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name])
        except ImportError as exc:
            from rapid_agent.backends import BackendUnavailableError

            raise BackendUnavailableError(
                f"serving needs the 'serve' extra ({exc.name} is missing): pip install 'rapid-agent[serve]'"
            ) from exc
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
