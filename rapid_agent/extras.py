"""The optional parts of rapid-agent and the pip extra that installs each.

`pip install rapid-agent` is the light core an agent application needs: the graph, answer checking, the
OpenAI-compatible and LangChain engines, tracing. The rest comes with an extra:

    hf      transformers engines in process (torch, transformers, accelerate, gguf)
    rl      VPO/GRPO training (`python -m rapid_agent.rl`): hf plus trl, peft, datasets, matplotlib, tensorboard
    vllm    vLLM engines in process (GPU machines)
    deepspeed  rl plus DeepSpeed, which the paper recipes train under (ZeRO-2/3)
    serve   the OpenAI-compatible server (`python -m rapid_agent serve`)
    demo    the offline demo (`python -m rapid_agent demo`): rl plus what its report draws with
    all     everything but vllm (which pins its own torch)

Code that needs an extra imports it lazily and turns the ImportError into `MissingExtraError`, whose message names
the extra to install.
"""

from __future__ import annotations

from rapid_agent.backends.base import BackendUnavailableError

#: extra -> the top-level modules whose absence means the extra is not installed
EXTRAS: dict[str, tuple[str, ...]] = {
    "hf": ("torch", "transformers", "accelerate", "gguf"),
    "rl": ("torch", "transformers", "trl", "peft", "datasets", "matplotlib", "accelerate"),
    "vllm": ("vllm",),
    "deepspeed": ("deepspeed",),
    "serve": ("fastapi", "uvicorn"),
    "demo": ("torch", "transformers", "trl", "peft", "datasets", "matplotlib", "accelerate"),
}


class MissingExtraError(BackendUnavailableError):
    """A feature's optional dependencies are not installed; the message says which extra brings them."""

    def __init__(self, extra: str, feature: str, missing: str) -> None:
        self.extra = extra
        super().__init__(
            f"{feature} needs the optional dependencies of rapid-agent[{extra}] ({missing} is not installed): "
            f"pip install 'rapid-agent[{extra}]'"
        )


def is_missing_extra(extra: str, error: ImportError) -> bool:
    """Whether `error` is one of `extra`'s modules not being installed (not, say, a broken import inside one)."""
    return isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in EXTRAS[extra]


def missing_extra(extra: str, feature: str, error: ImportError) -> ImportError | MissingExtraError:
    """The error to raise for `error`: a `MissingExtraError` naming `extra` when one of its modules is missing,
    else `error` itself (raise it unchanged: it is a real bug)."""
    if not is_missing_extra(extra, error):
        return error
    return MissingExtraError(extra, feature, (error.name or "").split(".")[0])
