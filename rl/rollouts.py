"""What TRL's vLLM rollouts hand to vLLM, made right for Qwen-style vision models (read in TRL 1.16, vLLM 0.34).

TRL tokenises a prompt with its image tokens already expanded (trl/trainer/grpo_trainer.py `_tokenize_prompts`,
~1735-1756: one `<|image_pad|>` per merged patch, 49 for a 200x200 image) and hands those ids with the raw images
to vLLM (trl/generation/vllm_generation.py `generate`, ~706-714 in colocate mode). vLLM 0.34 runs its own
multimodal processor on a token prompt and always applies its prompt updates (vllm/multimodal/processing/
processor.py `_maybe_apply_prompt_updates` ~1800), which replace one placeholder token per image
(`_plan_prompt_updates_with` ~692-783: the single-token target is matched once per item), so the other K-1 pads
stay in the prompt as text the trained model never sees (huggingface/trl#6294; the fix, trl#6718, is not in 1.16).
In server mode TRL instead asks the server for each image's features and lays them on the runs of image tokens in
its own ids (`_place_features`, ~519-548), which needs the runs expanded, and as long as the server's features.

So, per mode:
    colocate  each run of image tokens collapses to one placeholder, which vLLM expands itself;
    server    the runs stay, and each run's length is checked against the length of the server's features.
In both, images are first resized to the grid the trainer's processor uses (`fit_to_grid`): vLLM's processor keeps
the checkpoint's larger budget, and would otherwise make more image tokens than the trainer did (1296 against 1222
for a 1920x1080 image) - the mismatch that also crashed Qwen-VL's rope index with mixed image sizes (trl#6401).
"""

from __future__ import annotations

from typing import Any

from rapid_agent.backends.pixels import fit_to_grid, image_tokens


def image_runs(ids: list[int], token_id: int) -> list[tuple[int, int]]:
    """(start, length) of each run of `token_id` in `ids`."""
    runs: list[tuple[int, int]] = []
    for i, t in enumerate(ids):
        if t != token_id:
            continue
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def collapse_image_runs(ids: list[int], token_id: int) -> list[int]:
    """`ids` with each run of `token_id` reduced to one token: the unexpanded prompt vLLM expands itself."""
    return [t for i, t in enumerate(ids) if t != token_id or i == 0 or ids[i - 1] != token_id]


def _check_runs(prompts: list[list[int]], images: list[list | None], token_id: int, processor: Any) -> None:
    """Every prompt holds one run of image tokens per image, as long as the trainer's processor made it (or 1:
    a TRL that already sends unexpanded prompts)."""
    for k, (ids, imgs) in enumerate(zip(prompts, images)):
        runs = image_runs(ids, token_id)
        imgs = imgs or []
        if len(runs) != len(imgs):
            raise ValueError(f"rollout prompt {k} holds {len(runs)} runs of image tokens for {len(imgs)} image(s)")
        for (_, length), image in zip(runs, imgs):
            expected = image_tokens(image.width, image.height, processor)
            if length not in (expected, 1):
                raise ValueError(
                    f"rollout prompt {k}: a run of {length} image tokens for an image the processor makes "
                    f"{expected} tokens of ({image.width}x{image.height})"
                )


def guard_vllm_rollouts(trainer: Any) -> None:
    """Wrap the trainer's vLLM generation (if any) so that what reaches vLLM matches what the trainer trains on."""
    generation = getattr(trainer, "vllm_generation", None)
    processor = trainer.processing_class
    token_id = getattr(processor, "image_token_id", None)
    if generation is None or token_id is None or not hasattr(processor, "image_processor"):
        return
    if getattr(generation, "_rapid_guarded", False):
        return
    generate = generation.generate

    def guarded(prompts: list[list[int]], images: list | None, num_generations: int, profiler: Any = None) -> Any:
        if images is not None:
            images = [None if imgs is None else [fit_to_grid(im, processor) for im in imgs] for imgs in images]
            _check_runs(prompts, images, token_id, processor)
            if generation.mode == "colocate":
                prompts = [collapse_image_runs(ids, token_id) for ids in prompts]
        return generate(prompts=prompts, images=images, num_generations=num_generations, profiler=profiler)

    generation.generate = guarded
    place = getattr(generation, "_place_features", None)
    if generation.mode == "server" and place is not None:
        generation._place_features = _checked_placement(place)
    generation._rapid_guarded = True


def _checked_placement(place: Any) -> Any:
    """TRL's `_place_features`, refusing features whose length differs from the run they are laid on: the server
    would otherwise embed N image features over M != N prompt tokens."""

    def checked(features: dict | None, prompt_ids: list[int]) -> dict | None:
        placed = place(features, prompt_ids)
        if placed is None:
            return None
        made = features["mm_placeholders"]["image"]
        for i, (server, run) in enumerate(zip(made, placed["mm_placeholders"]["image"])):
            if server["length"] != run["length"]:
                raise ValueError(
                    f"image {i}: the vLLM server made {server['length']} image tokens where the trainer's processor "
                    f"made {run['length']}: their pixel budgets differ. Start the server with at least the run's "
                    "budget (`trl vllm-serve ... --mm-processor-kwargs '{\"max_pixels\": N}'`, N = the recipe's "
                    "max_pixels) or leave its checkpoint default, which is larger."
                )
        return placed

    return checked
