"""vLLM's offline engine in process, for either role (optional extra `rapid-agent[vllm]`, GPU machines only).

Requests go through `LLM.chat`, so the model's own chat template formats them and images travel as data-URL
`image_url` parts, the form every vLLM version with multimodal chat accepts. vLLM batches a whole engine call
itself, so `max_batch_size` is large and calls run one at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rapid_agent.backends.base import (
    BackendUnavailableError,
    ChatRequest,
    Completion,
    Engine,
    EngineError,
    GenerationConfig,
    Role,
)
from rapid_agent.backends.images import ImageFormat, openai_messages
from rapid_agent.backends.pixels import DEFAULT_MAX_PIXELS, checkpoint_max_pixels

_INSTALL_HINT = (
    "vLLM is not installed: pip install 'rapid-agent[vllm]' (GPU machines only); on a CPU machine use an 'hf:' "
    "engine, or an 'openai:<model>@<url>' engine pointed at a vLLM server running elsewhere"
)


#: the GPU memory share each role takes by default: together they fit one GPU, so a captioner and a reasoner can
#: both run in one process (vLLM's own default, 0.9 each, would make the second engine fail to start)
GPU_MEMORY_SHARE = {"captioner": 0.4, "reasoner": 0.5}


class VLLMEngine(Engine):
    """A `vllm.LLM` behind the engine interface. `engine_kwargs` go to `vllm.LLM` (tensor_parallel_size, dtype,
    gpu_memory_utilization, max_model_len, ...); `max_images_per_prompt` bounds the images of one captioner request."""

    max_batch_size = 512
    max_concurrent_calls = 1  # one LLM instance is not safe to drive from several threads

    def __init__(
        self,
        model: str,
        *,
        role: Role,
        seed: int = 0,
        image_format: ImageFormat = "PNG",
        max_images_per_prompt: int = 8,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        **engine_kwargs: Any,
    ) -> None:
        if max_images_per_prompt < 1:
            raise ValueError(f"max_images_per_prompt must be >= 1, got {max_images_per_prompt!r}")
        try:
            import vllm
        except ImportError as exc:
            raise BackendUnavailableError(f"{_INSTALL_HINT} (import failed: {exc})") from exc
        self.model = model
        self.role = role
        self.spec = f"vllm:{model}"
        self.image_format = image_format
        kwargs: dict[str, Any] = {"model": model, "seed": seed, **engine_kwargs}
        kwargs.setdefault("gpu_memory_utilization", GPU_MEMORY_SHARE[role])
        if role == "captioner":
            # vLLM sizes its multimodal profiling run by the most images a prompt may hold (MMMU has up to 7).
            kwargs.setdefault("limit_mm_per_prompt", {"image": max_images_per_prompt})
            # the one pixel budget, capped at the checkpoint's own as the hf engine caps it (rapid_agent.backends.
            # pixels); vLLM 0.34 lets mm_processor_kwargs' max_pixels override the processor's size.longest_edge
            # (vllm/model_executor/models/qwen2_vl.py `_get_vision_size`, ~955-977)
            own = checkpoint_max_pixels(model)
            budget = max_pixels if own is None or max_pixels is None else min(own, max_pixels)
            if budget is not None:
                kwargs["mm_processor_kwargs"] = {"max_pixels": budget, **kwargs.get("mm_processor_kwargs", {})}
        self.llm = vllm.LLM(**kwargs)
        self._sampling_params = vllm.SamplingParams

    @classmethod
    def from_llm(
        cls, llm: Any, *, role: Role, spec: str = "in-memory", image_format: ImageFormat = "PNG"
    ) -> VLLMEngine:
        """Wrap a running `vllm.LLM` as it is (its weights and settings), e.g. TRL's colocated rollout engine."""
        import vllm

        engine = cls.__new__(cls)
        engine.llm, engine.model, engine.role, engine.spec = llm, spec, role, spec
        engine.image_format = image_format
        engine._sampling_params = vllm.SamplingParams
        return engine

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        """One `LLM.chat` call for the whole batch; if it raises, each request is retried alone to isolate it."""
        if not requests:
            return []
        # every field explicit, as every engine applies them (vLLM's own defaults agree today: sampling_params.py
        # ~304-321; `vllm serve` instead fills unset fields from generation_config.json)
        params = self._sampling_params(
            temperature=gen.temperature,
            top_p=gen.top_p,
            top_k=gen.top_k,
            min_p=gen.min_p,
            repetition_penalty=gen.repetition_penalty,
            max_tokens=gen.max_new_tokens,
            seed=gen.seed,
        )
        conversations: list[list[dict] | Exception] = []
        for request in requests:
            try:
                conversations.append(openai_messages(request, image_format=self.image_format))
            except Exception as exc:  # an image PIL cannot encode fails that request, not the batch
                conversations.append(
                    EngineError.caused_by(f"could not build the request: {type(exc).__name__}: {exc}", exc)
                )
        valid = [c for c in conversations if not isinstance(c, Exception)]
        try:
            outputs = self._chat(valid, params) if valid else []
        except Exception:
            # vLLM rejects a batch as a whole (e.g. one prompt longer than max_model_len); one bad request must not
            # cost the others their answers, so find it by running each alone.
            outputs = [self._chat_one(c, params) for c in valid]
        results = iter(outputs)
        return [c if isinstance(c, Exception) else next(results) for c in conversations]

    def close(self) -> None:
        # Dropping the reference is what frees the GPU memory; vLLM has no public shutdown that works across versions.
        self.llm = None

    def _chat(self, conversations: list[list[dict]], params: Any) -> list[Completion]:
        t0 = time.perf_counter()
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        elapsed = time.perf_counter() - t0
        if len(outputs) != len(conversations):
            raise EngineError(f"vLLM returned {len(outputs)} outputs for {len(conversations)} conversations")
        return [_completion(out, elapsed, len(conversations)) for out in outputs]

    def _chat_one(self, conversation: list[dict], params: Any) -> Completion | Exception:
        try:
            return self._chat([conversation], params)[0]
        except Exception as exc:
            return EngineError.caused_by(f"vLLM failed on this request: {type(exc).__name__}: {exc}", exc)


def _completion(out: Any, elapsed: float, batch_size: int) -> Completion:
    sample = out.outputs[0]
    meta: dict[str, Any] = {"batch_size": batch_size}
    return Completion(
        text=sample.text,
        prompt_tokens=len(out.prompt_token_ids or ()),
        completion_tokens=len(sample.token_ids or ()),
        # Every request of a batch waits for the whole batch, so that is the latency each one saw.
        latency_s=elapsed,
        meta=meta,
        finish_reason=getattr(sample, "finish_reason", None),
    )
