"""A transformers engine: the captioner (a vision-language model) or reasoner (a causal LM) runs in this process.

Requests are formatted with the model's own chat template, left-padded and generated in one `model.generate` call
per chunk of `max_batch_size`. Models load from a local directory, a hub id already in the local cache, or (for
reasoners) a single `.gguf` file. `HFEngine.from_model` wraps a model that is already in memory, e.g. the policy an
RL trainer is updating, so the same code judges with it without copying weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen2_5_VLProcessor

from rapid_agent.backends.base import (
    BackendUnavailableError,
    ChatRequest,
    Completion,
    Engine,
    EngineError,
    GenerationConfig,
    Role,
)
from rapid_agent.backends.builtin import builtin_model_path
from rapid_agent.backends.pixels import DEFAULT_MAX_PIXELS, cap_pixel_budget


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without the video processor, whose loading needs torchvision.

    The stock class cannot be built with `video_processor=None`; leaving the argument out of `__init__` makes
    `from_pretrained` skip it. Load it with this class's own `from_pretrained`, not `AutoProcessor`.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=chat_template
        )


def default_device_and_dtype(
    device: str | None = None, dtype: str | torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """CUDA + bfloat16 when a GPU is there, else CPU + float32 (bfloat16 matmuls are slow on most CPUs)."""
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        return dev, torch.bfloat16 if dev.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32' or 'bfloat16'")
        dtype = resolved
    return dev, dtype


def _resolve_source(model: str) -> Path | str:
    """A built-in name, a local path (checked to exist) or a hub id (checked to be fetchable: offline, cached)."""
    builtin = builtin_model_path(model)
    if builtin is not None:
        return builtin
    path = Path(model).expanduser()
    if path.exists():
        return path
    looks_like_path = model.startswith(("/", ".", "~")) or model.endswith(".gguf") or model.count("/") != 1
    if looks_like_path:
        raise BackendUnavailableError(f"model path {str(path)!r} does not exist")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise BackendUnavailableError(
            f"model {model!r} could not be fetched from the hub (offline, not in the local cache, or no such repo; "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Download it where there is "
            f"network and pass the local directory instead, e.g. 'hf:/path/to/model'."
        ) from exc
    return model


def load_processor(model: str | Path, *, trust_remote_code: bool = False) -> Any:
    """The processor of a vision-language checkpoint, falling back to the image-only Qwen2.5-VL one.

    `AutoProcessor` fails for Qwen2.5-VL where torchvision is missing or broken (it builds a video processor) and
    returns a bare tokenizer when `processor_class` is unknown; both cases get `ImageOnlyQwen2_5_VLProcessor`,
    whose image half is the PIL image processor.
    """
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code)
        if hasattr(processor, "image_processor"):
            return processor
    except Exception as exc:  # transformers raises OSError, ImportError or ValueError here
        auto_error = exc
    else:
        auto_error = None
    try:
        return ImageOnlyQwen2_5_VLProcessor.from_pretrained(model)
    except Exception as exc:
        raise BackendUnavailableError(
            f"could not load an image processor for {str(model)!r}: AutoProcessor gave "
            f"{auto_error!r} and the image-only Qwen2.5-VL fallback gave {exc!r}"
        ) from exc


class HFEngine(Engine):
    """A transformers model as a captioner (`AutoModelForImageTextToText`) or reasoner (`AutoModelForCausalLM`).
    `astream` streams one request through transformers' `AsyncTextIteratorStreamer`."""

    max_concurrent_calls = 1
    streams = True

    def __init__(
        self,
        model: str,
        *,
        role: Role,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_batch_size: int = 16,
        trust_remote_code: bool = False,
        device_map: str | dict | None = None,
        attn_implementation: str | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        if role not in ("captioner", "reasoner"):
            raise ValueError(f"role must be 'captioner' or 'reasoner', got {role!r}")
        if device_map is not None and device is not None:
            raise ValueError("give `device` (one device) or `device_map` (sharded across devices), not both")
        dev, dt = default_device_and_dtype(device, dtype)
        source = _resolve_source(model)
        # 32B/72B captioners do not fit one GPU: `device_map="auto"` lets accelerate spread the layers over every GPU
        load: dict[str, Any] = {"dtype": dt, "trust_remote_code": trust_remote_code}
        if device_map is not None:
            load["device_map"] = device_map
        if attn_implementation is not None:
            load["attn_implementation"] = attn_implementation
        if role == "captioner":
            if str(source).endswith(".gguf"):
                raise ValueError(f"a .gguf file holds a text-only model and cannot be the captioner: {model!r}")
            from transformers import AutoModelForImageTextToText

            processor = load_processor(source, trust_remote_code=trust_remote_code)
            # the one pixel budget (rapid_agent.backends.pixels): a base checkpoint and one trained from it at this
            # budget see the same image tokens; None keeps the checkpoint's own
            cap_pixel_budget(processor, max_pixels)
            net = AutoModelForImageTextToText.from_pretrained(source, **load)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if isinstance(source, Path) and source.suffix == ".gguf":
                # transformers dequantises GGUF weights; it only does so into float32
                kw: dict[str, Any] = {"gguf_file": source.name}
                processor = AutoTokenizer.from_pretrained(source.parent, **kw)
                net = AutoModelForCausalLM.from_pretrained(source.parent, **{**load, **kw, "dtype": torch.float32})
                net = net.to(dt)
            else:
                processor = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
                net = AutoModelForCausalLM.from_pretrained(source, **load)
        if device_map is None:
            net = net.to(dev)
        self._setup(net.eval(), processor, role=role, spec=f"hf:{model}", max_batch_size=max_batch_size)

    @classmethod
    def from_model(
        cls,
        model: Any,
        processor_or_tokenizer: Any,
        *,
        role: Role,
        spec: str = "in-memory",
        max_batch_size: int = 16,
    ) -> HFEngine:
        """Wrap a loaded model as is (same parameters, same device); generation switches it to eval mode and back."""
        engine = cls.__new__(cls)
        engine._setup(model, processor_or_tokenizer, role=role, spec=spec, max_batch_size=max_batch_size)
        return engine

    def _setup(self, model: Any, processor: Any, *, role: Role, spec: str, max_batch_size: int) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size!r}")
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        # one generate at a time: batched calls come through the micro-batcher, streamed ones do not
        self._lock = threading.Lock()
        self.role = role
        self.spec = spec
        self.max_batch_size = max_batch_size
        if role == "captioner" and not hasattr(processor, "image_processor"):
            raise ValueError(f"a captioner needs a processor with an image processor, got {type(processor).__name__}")
        if not getattr(processor, "chat_template", None) and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{spec}: the tokenizer has no chat template, so chat requests cannot be formatted")
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self._eos_ids = sorted(eos_ids)
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else self._eos_ids[0]

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        with self._lock:
            return self._generate_all(requests, gen)

    async def astream(self, request: ChatRequest, gen: GenerationConfig) -> AsyncIterator[str | Completion]:
        from transformers import AsyncTextIteratorStreamer

        if self.role == "reasoner" and request.images:
            raise EngineError(f"{self.spec} is a text-only reasoner and cannot take an image")
        streamer = AsyncTextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run() -> Completion | Exception:
            try:
                with self._lock:
                    return self._generate_all([request], gen, streamer=streamer)[0]
            finally:
                streamer.end()  # also when generation failed before it began: the consumer waits on the stream

        done = asyncio.get_running_loop().run_in_executor(None, run)
        try:
            async for piece in streamer:
                if piece:
                    yield piece
        finally:
            result = await done  # a stream abandoned halfway still waits for the model to be free again
        if isinstance(result, Exception):
            raise result if isinstance(result, EngineError) else EngineError.caused_by(str(result), result)
        yield result

    def _generate_all(
        self, requests: Sequence[ChatRequest], gen: GenerationConfig, streamer: Any = None
    ) -> list[Completion | Exception]:
        start = time.perf_counter()
        out: list[Completion | Exception | None] = [None] * len(requests)
        todo: list[int] = []
        for i, request in enumerate(requests):
            if self.role == "reasoner" and request.images:
                out[i] = EngineError(f"{self.spec} is a text-only reasoner and cannot take an image")
            else:
                todo.append(i)
        done: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with self._seeded(gen.seed), torch.inference_mode():
                for lo in range(0, len(todo), self.max_batch_size):
                    chunk = todo[lo : lo + self.max_batch_size]
                    results = self._generate_isolated([requests[i] for i in chunk], gen, streamer)
                    for i, result in zip(chunk, results):
                        out[i] = result
                        if isinstance(result, Completion):
                            done.append(result)
        finally:
            self.model.train(was_training)
        latency = (time.perf_counter() - start) / max(len(done), 1)
        for completion in done:
            completion.latency_s = latency
        return out  # type: ignore[return-value]  # every slot is filled above

    def _generate_isolated(
        self, requests: list[ChatRequest], gen: GenerationConfig, streamer: Any = None
    ) -> list[Completion | Exception]:
        """One padded batch; if preparing or running it fails (one image the processor rejects, one prompt too long),
        each request runs alone so that only the bad one fails."""
        try:
            return list(self._generate_chunk(requests, gen, streamer))
        except torch.cuda.OutOfMemoryError:
            raise  # a whole-batch condition: retrying one by one would only thrash
        except Exception as exc:
            if len(requests) == 1:
                return [EngineError.caused_by(f"{self.spec}: {type(exc).__name__}: {exc}", exc)]
        return [self._generate_isolated([request], gen)[0] for request in requests]

    def _generate_chunk(
        self, requests: list[ChatRequest], gen: GenerationConfig, streamer: Any = None
    ) -> list[Completion]:
        texts = [
            self.processor.apply_chat_template(r.messages(), add_generation_prompt=True, tokenize=False)
            for r in requests
        ]
        images = [image for r in requests for image in r.images]  # in prompt order, as the processor consumes them
        if images:
            inputs = self.processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
        else:
            # templates already hold any BOS token, so the tokenizer must not add one again
            inputs = self.tokenizer(
                texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt"
            )
        device = self.model.device if hasattr(self.model, "device") else next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        # every field explicit: transformers fills what a call leaves unset from the checkpoint's generation_config
        # (generation/utils.py `_prepare_generation_config`, ~2104-2116), e.g. Qwen2.5-VL's repetition_penalty 1.05
        sampling: dict[str, Any] = {"repetition_penalty": gen.repetition_penalty}
        if gen.greedy:
            sampling.update(do_sample=False, temperature=None, top_p=None, top_k=None, min_p=None)
        else:
            # top_k 0 and min_p 0 are "off", which transformers spells None
            sampling.update(
                do_sample=True,
                temperature=gen.temperature,
                top_p=gen.top_p,
                top_k=gen.top_k or None,
                min_p=gen.min_p or None,
            )
        generated = self.model.generate(
            **inputs,
            max_new_tokens=gen.max_new_tokens,
            pad_token_id=self._pad_id,
            eos_token_id=self._eos_ids,
            streamer=streamer,
            **sampling,
        )
        prompt_len = inputs["input_ids"].shape[1]
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        completions = []
        for row, n_prompt in zip(generated[:, prompt_len:].tolist(), prompt_counts):
            # a row without EOS ran to max_new_tokens (truncated); after EOS come only pads
            stop = next((j + 1 for j, t in enumerate(row) if t in self._eos_ids), None)
            n_new = stop if stop is not None else len(row)
            text = self.tokenizer.decode(row[:n_new], skip_special_tokens=True)
            completions.append(
                Completion(
                    text,
                    prompt_tokens=int(n_prompt),
                    completion_tokens=n_new,
                    finish_reason="stop" if stop is not None else "length",
                )
            )
        return completions

    def _seeded(self, seed: int | None) -> contextlib.AbstractContextManager:
        """Seed torch for this call only, leaving the caller's random state as it was."""
        if seed is None:
            return contextlib.nullcontext()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []

        @contextlib.contextmanager
        def seeded():
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                yield

        return seeded()

    def close(self) -> None:
        self.model = None
        self.processor = self.tokenizer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
