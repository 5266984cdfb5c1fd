"""What TRL 1.16's vLLM rollouts hand to vLLM: driven through TRL's own `_generate_single_turn` and
`VLLMGeneration.generate`, with vLLM replaced by stand-ins that do what vLLM 0.34 does with what they receive
(read in its sources: see rapid_agent.rl.rollouts). Checked: the prompt the rollout model sees is the prompt the
trainer trains on, for images of mixed sizes, in colocate and server mode; and a server whose pixel budget is
smaller than the run's is refused with a message naming the fix."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PIL import Image

from rapid_agent.backends.pixels import image_tokens
from rapid_agent.inputs import load_image
from rapid_agent.models import build_tiny_qwen2_5_vl
from rapid_agent.rl.config import SolutionConfig
from rapid_agent.rl.rollouts import collapse_image_runs, image_runs
from rapid_agent.rl.train import build_trainer

#: Qwen2.5-VL-Instruct's own bounds (preprocessor_config.json), which vLLM keeps unless told otherwise
CHECKPOINT_MIN, CHECKPOINT_MAX = 3136, 12845056
BUDGET = 1280 * 28 * 28
EOS = 0


def checkpoint_processor(max_pixels: int = CHECKPOINT_MAX):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=CHECKPOINT_MIN, max_pixels=max_pixels)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """A GRPO trainer on a tiny Qwen2.5-VL whose processor has the real checkpoint's pixel bounds."""
    root = tmp_path_factory.mktemp("rollouts")
    model = build_tiny_qwen2_5_vl(root / "captioner", min_pixels=CHECKPOINT_MIN, max_pixels=CHECKPOINT_MAX)
    import datasets

    rows = [{"prompt": [{"role": "user", "content": "Describe."}], "answer": "1", "question": "q"}] * 4
    cfg = SolutionConfig(
        output_dir=str(root / "out"),
        model_name_or_path=str(model),
        mode="sol",
        max_pixels=BUDGET,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        report_to="none",
        use_cpu=True,
        activation_checkpointing=False,
        disable_tqdm=True,
    )
    return build_trainer(cfg, train_dataset=datasets.Dataset.from_list(rows))


def prompts_with_images():
    """Two prompts whose images differ in size, decoded as training decodes them."""
    sizes = [(1920, 1080), (300, 200)]
    images = [load_image(Image.new("RGB", size, "white"), max_pixels=BUDGET) for size in sizes]
    return [
        [{"role": "user", "content": [{"type": "image", "image": im}, {"type": "text", "text": "Describe."}]}]
        for im in images
    ]


def _as_list(images) -> list:
    return images if isinstance(images, list) else [images]


class Colocated:
    """vLLM 0.34's `LLM.generate` on token prompts with images: each image's first placeholder token (searching on
    from the previous image's) becomes as many tokens as vLLM's processor makes of the image at the checkpoint's
    budget; every other token stays. Records the prompt the model would see."""

    def __init__(self, token_id: int) -> None:
        self.token_id, self.seen = token_id, []
        self.processor = checkpoint_processor()

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        outputs = []
        for row in prompts:
            ids, out, pos = row["prompt_token_ids"], [], 0
            for image in _as_list(row.get("multi_modal_data", {}).get("image", [])):
                j = ids.index(self.token_id, pos)
                out += ids[pos:j] + [self.token_id] * image_tokens(image.width, image.height, self.processor)
                pos = j + 1
            self.seen.append(out + ids[pos:])
            lp = {EOS: SimpleNamespace(rank=1, logprob=-0.5)}
            outputs.append(
                SimpleNamespace(
                    prompt_token_ids=self.seen[-1], outputs=[SimpleNamespace(token_ids=[EOS], logprobs=[lp])]
                )
            )
        return outputs


class Server:
    """`trl vllm-serve` seen through TRL's VLLMClient: features made by the server's processor, and a generate that
    records (tokens the features hold, tokens of the prompt run they are laid on) for each image."""

    def __init__(self, max_pixels: int = CHECKPOINT_MAX) -> None:
        self.processor, self.laid = checkpoint_processor(max_pixels), []

    def image_features(self, images):
        features = []
        for imgs in images:
            counts = [image_tokens(im.width, im.height, self.processor) for im in imgs]
            # placeholders as the server reports them: where the images sit in its own throwaway conversation
            starts = [3 + sum(counts[:i]) + 2 * i for i in range(len(counts))]
            placeholders = [{"offset": s, "length": n} for s, n in zip(starts, counts)]
            features.append(
                {
                    "mm_hashes": {"image": ["h"] * len(counts)},
                    "mm_placeholders": {"image": placeholders},
                    "made": counts,
                }
            )
        return features

    def generate(self, prompts, features, n, **kwargs):
        for feats in features:
            self.laid += [(made, ph["length"]) for made, ph in zip(feats["made"], feats["mm_placeholders"]["image"])]
        rows = len(prompts) * n
        return {"prompt_ids": prompts, "completion_ids": [[EOS]] * rows, "logprobs": [[[-0.5]]] * rows}


def install(trainer, monkeypatch, mode: str, backend) -> None:
    """TRL's real VLLMGeneration in `mode`, with `backend` where vLLM would be, guarded as build_trainer guards it."""
    import trl.generation.vllm_generation as vg

    from rapid_agent.rl.rollouts import guard_vllm_rollouts

    monkeypatch.setattr(vg, "SamplingParams", lambda **kw: kw, raising=False)  # vLLM's class; not installed here
    gen = vg.VLLMGeneration.__new__(vg.VLLMGeneration)
    gen.__dict__.update(
        mode=mode,
        accelerator=trainer.accelerator,
        model=trainer.model,
        processing_class=trainer.processing_class,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=None,
        repetition_penalty=1.0,
        max_completion_length=4,
        logprobs=0,
        generation_kwargs={},
        structured_outputs_regex=None,
        tensor_parallel_size=1,
        enable_sleep_mode=False,
        _llm_weights_sleeping=False,
    )
    if mode == "colocate":
        gen.llm = backend
    else:
        gen.vllm_client = backend
    monkeypatch.setattr(trainer, "vllm_generation", gen, raising=False)
    monkeypatch.setattr(trainer, "use_vllm", True)
    monkeypatch.setattr(trainer, "_last_loaded_step", trainer.state.global_step, raising=False)  # no weight sync
    guard_vllm_rollouts(trainer)


def rollout(trainer):
    prompt_ids, images, fields = trainer._tokenize_prompts(prompts_with_images())
    trainer._generate_single_turn(prompt_ids, images, fields, num_generations=1)
    return prompt_ids


def test_runs_collapse_to_one_placeholder_each() -> None:
    assert image_runs([5, 9, 9, 9, 5, 9, 5], 9) == [(1, 3), (5, 1)]
    assert collapse_image_runs([5, 9, 9, 9, 5, 9, 9, 5], 9) == [5, 9, 5, 9, 5]


def test_colocated_vllm_sees_the_prompt_the_trainer_trains_on(trainer, monkeypatch) -> None:
    token = trainer.processing_class.image_token_id
    llm = Colocated(token)
    install(trainer, monkeypatch, "colocate", llm)
    prompt_ids = rollout(trainer)
    # the 1920x1080 image is 1222 tokens to the trainer (the checkpoint's own budget would make it 1296)
    assert [length for _, length in image_runs(prompt_ids[0], token)] == [1222]
    assert [len(image_runs(ids, token)) for ids in llm.seen] == [1, 1]  # one run per image, no stray pads
    assert llm.seen == [list(ids) for ids in prompt_ids]


def test_a_vllm_server_lays_features_as_long_as_the_runs(trainer, monkeypatch) -> None:
    server = Server()
    install(trainer, monkeypatch, "server", server)
    rollout(trainer)
    assert len(server.laid) == 2 and all(made == run for made, run in server.laid), server.laid


def test_a_server_with_a_smaller_pixel_budget_is_refused_naming_the_fix(trainer, monkeypatch) -> None:
    install(trainer, monkeypatch, "server", Server(max_pixels=BUDGET // 2))
    with pytest.raises(ValueError, match=r"pixel budgets differ.*mm-processor-kwargs"):
        rollout(trainer)
