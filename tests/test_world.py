"""Tests of the synthetic world: determinism, answers checked by the independent oracle, images read back."""

from __future__ import annotations

import random
import re
from collections import Counter

import datasets
import numpy as np
import pytest

from rapid_agent.world import (
    COLOURS,
    DESCRIPTIVE,
    FEATURES,
    PALETTE,
    SHAPES,
    STYLES,
    TEMPLATES,
    Scene,
    SceneObject,
    answer_from_description,
    answer_from_text,
    ask,
    build_world,
    describe,
    generate_items,
    is_description,
    parse_counts,
    render,
    sample_scene,
    solution,
    style_of,
    style_text,
)

ALL_KINDS = {kind for templates in TEMPLATES.values() for kind in templates}


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return generate_items(500, seed=7)


def _read_cells(image, grid: int) -> dict[tuple[int, int], tuple[str, str] | None]:
    """Per cell: (colour, shape) read from the pixels, or None for an all-white cell."""
    pixels = np.asarray(image.convert("RGB"))
    side = pixels.shape[0] // grid
    found = {}
    for row in range(grid):
        for col in range(grid):
            cell = pixels[row * side : (row + 1) * side, col * side : (col + 1) * side].reshape(-1, 3)
            ink = cell[(cell != 255).any(axis=1)]
            if len(ink) == 0:
                found[(row, col)] = None
                continue
            votes = Counter(tuple(int(v) for v in p) for p in ink)
            rgb = votes.most_common(1)[0][0]
            colour = next(name for name, value in PALETTE.items() if value == rgb)
            mask = (cell != 255).any(axis=1).reshape(side, side)
            ys, xs = np.nonzero(mask)
            # A filled shape covers all of its bounding box (square), about pi/4 of it (circle) or half (triangle).
            fill = mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
            shape = "square" if fill > 0.92 else "circle" if fill > 0.65 else "triangle"
            found[(row, col)] = (colour, shape)
    return found


def test_same_seed_same_items_and_other_seed_differs():
    a, b, c = generate_items(30, seed=3), generate_items(30, seed=3), generate_items(30, seed=4)
    strip = [{k: v for k, v in item.items() if k != "image"} for item in a]
    assert strip == [{k: v for k, v in item.items() if k != "image"} for item in b]
    assert [item["image"].tobytes() for item in a] == [item["image"].tobytes() for item in b]
    assert [item["image"].tobytes() for item in a] != [item["image"].tobytes() for item in c]
    assert [item["question"] for item in a] != [item["question"] for item in c]
    assert len({item["id"] for item in a}) == 30


def test_every_answer_matches_the_oracle_over_all_levels(items):
    assert {item["level"] for item in items} == {1, 2, 3}
    assert {item["kind"] for item in items} == ALL_KINDS
    for item in items:
        assert answer_from_description(item["description"], item["question"], item["choices"]) == item["answer"], item
        assert item["solution"].endswith(f"\\boxed{{{item['answer']}}}")


def test_oracle_follows_the_description_not_the_gold():
    description, question = "2 red circles, 1 red square, 3 blue triangles.", "How many red shapes are there?"
    assert answer_from_description(description, question) == "3"
    assert answer_from_description(description.replace("2 red", "4 red"), question) == "5"
    assert answer_from_description(description, "How many more blue shapes than red shapes are there?") == "0"
    assert answer_from_description(description, "How many circles and triangles are there in total?") == "5"
    points = "Each square is worth 4 points and each triangle is worth 1 point. How many points are there in total?"
    assert answer_from_description(description, points) == "7"
    mc = "Which colour has the most shapes? Options: A. green B. blue C. red D. yellow"
    assert answer_from_description(description.replace("3 blue", "1 blue"), mc) == "C"
    with pytest.raises(ValueError, match="no single option"):
        answer_from_description(description, mc)  # 3 red vs 3 blue is a tie
    with pytest.raises(ValueError, match="cannot read"):
        answer_from_description(description, "What is the meaning of this?")


def test_describe_orders_by_colour_then_shape_with_plurals():
    objects = [SceneObject("green", "triangle", 0, 0), SceneObject("blue", "square", 0, 1)]
    objects += [SceneObject("red", "circle", 1, c) for c in range(3)] + [SceneObject("green", "triangle", 2, 0)]
    scene = Scene(grid=4, objects=tuple(objects))
    assert describe(scene) == "3 red circles, 1 blue square, 2 green triangles."
    assert parse_counts(describe(scene)) == {("red", "circle"): 3, ("blue", "square"): 1, ("green", "triangle"): 2}
    question = ask(scene, 3, random.Random(0), kind="diff_colour")
    assert question is not None and question.answer in {"1", "2"}
    assert re.search(r"\d+ - \d+ = \d+\. \\boxed\{\d\}$", solution(scene, question))


def test_rendered_cells_match_the_scene_objects():
    rng = random.Random(11)
    for image_size, grid in [(112, 4), (84, 3), (112, 2)]:
        for _ in range(40):
            scene = sample_scene(rng, grid=grid, max_objects=min(6, grid * grid))
            cells = _read_cells(render(scene, image_size), grid)
            truth = {(o.row, o.col): (o.colour, o.shape) for o in scene.objects}
            assert cells == {cell: truth.get(cell) for cell in cells}


def test_description_counts_match_the_image(items):
    for item in items[:150]:
        drawn = Counter(v for v in _read_cells(item["image"], 4).values() if v is not None)
        assert parse_counts(item["description"]) == dict(drawn)


def test_images_are_sized_in_28_pixel_blocks():
    for image_size, grid in [(112, 4), (84, 3), (56, 2)]:
        for item in generate_items(6, seed=1, image_size=image_size, grid=grid):
            assert item["image"].size == (image_size, image_size) and image_size % 28 == 0
            assert item["image"].mode == "RGB"
    with pytest.raises(ValueError, match="image_size=100"):
        generate_items(1, seed=0, image_size=100, grid=4)
    with pytest.raises(ValueError, match="grid=3"):
        render(Scene(grid=3, objects=()), 112)  # 112 / 3 is not whole


def test_levels_are_respected():
    for level in (1, 2, 3):
        got = generate_items(60, seed=level, levels=(level,))
        assert {item["level"] for item in got} == {level}
        assert {item["kind"] for item in got} <= set(TEMPLATES[level])
    mixed = generate_items(12, seed=0, levels=(3, 1))
    assert [item["level"] for item in mixed] == [3, 1] * 6
    with pytest.raises(ValueError, match="4"):
        generate_items(1, seed=0, levels=(4,))


def test_multiple_choice_answers_are_letters_without_ties(items):
    multiple = [item for item in items if item["choices"]]
    assert len(multiple) > 25 and {item["kind"] for item in multiple} == {"most_colour", "most_shape"}
    for item in multiple:
        letters = "ABCD"[: len(item["choices"])]
        assert item["answer"] in letters
        assert set(item["choices"]) == set(COLOURS if item["kind"] == "most_colour" else SHAPES)
        for letter, choice in zip(letters, item["choices"], strict=True):
            assert f"{letter}. {choice}" in item["question"]
        counts = parse_counts(item["description"])
        by = 0 if item["kind"] == "most_colour" else 1
        totals = [sum(n for key, n in counts.items() if key[by] == c) for c in item["choices"]]
        assert totals.count(max(totals)) == 1
        assert item["choices"][letters.index(item["answer"])] == item["choices"][totals.index(max(totals))]
    assert all(not item["choices"] for item in items if item["level"] < 3)


def test_query_captions_state_the_asked_counts_and_no_answer(items):
    group = re.compile(r"(\d+) ((?:(?:red|blue|green|yellow) )?(?:shape|circle|square|triangle))s?\b")
    for item in items:
        stated = group.findall(item["query_caption"])
        assert stated, item
        if item["kind"] in ("total", "most_colour", "most_shape"):
            assert item["query_caption"] == item["description"]
            continue
        for n, noun in stated:  # each stated count is the true count of that group
            assert answer_from_description(item["description"], f"How many {noun}s are there?") == n, item
        assert len(stated) == (1 if item["level"] == 1 else 2)
        nouns = {noun.replace(" shape", "") for _, noun in stated}
        assert all(noun.split()[-1] in item["question"] for noun in nouns), item
        if item["level"] == 2:  # two counts of at least 2: the answer is never a stated count
            assert all(int(n) >= 2 for n, _ in stated) and item["answer"] not in {n for n, _ in stated}


def test_level_two_names_its_operation(items):
    level2 = [item for item in items if item["level"] == 2]
    assert {item["kind"] for item in level2} == set(TEMPLATES[2])
    for item in level2:
        a, b = (int(n) for n in re.findall(r"\d+", item["query_caption"]))
        op = "*" if item["question"].startswith("What is the product") else "+"
        assert (op == "*") == item["kind"].startswith("product")
        assert item["answer"] == str(a * b if op == "*" else a + b)
        assert item["solution"].endswith(f"{a} {op} {b} = {item['answer']}. \\boxed{{{item['answer']}}}")


def test_differences_are_positive(items):
    diffs = [item for item in items if item["kind"].startswith("diff")]
    assert diffs and all(int(item["answer"]) > 0 for item in diffs)


def test_build_world_holds_out_test_and_round_trips(tmp_path):
    world = build_world(120, 40, seed=5, image_size=84, grid=3)
    assert set(world) == {"train", "test"}
    assert world["train"].num_rows == 120 and world["test"].num_rows == 40
    assert world["train"].features == FEATURES
    assert isinstance(world["train"].features["image"], datasets.Image)
    assert not set(world["train"]["signature"]) & set(world["test"]["signature"])
    # The test split depends only on the seed, so it stays the same when the train split grows.
    assert build_world(10, 40, seed=5, image_size=84, grid=3)["test"]["signature"] == world["test"]["signature"]
    world.save_to_disk(str(tmp_path / "world"))
    loaded = datasets.load_from_disk(str(tmp_path / "world"))
    assert loaded["test"].features == FEATURES
    first, again = world["test"][0], loaded["test"][0]
    assert again["image"].size == (84, 84)
    assert np.array_equal(np.asarray(again["image"].convert("RGB")), np.asarray(first["image"].convert("RGB")))
    assert {k: v for k, v in again.items() if k != "image"} == {k: v for k, v in first.items() if k != "image"}


def test_a_tiny_world_that_cannot_hold_out_says_so():
    with pytest.raises(ValueError, match="too small"):
        # One cell, one object, three level-1 templates: 36 (scene, question) pairs, all of them drawn for test.
        build_world(5, 400, seed=0, image_size=28, grid=1, levels=(1,))


def test_object_lists_count_like_the_description(items):
    for item in items[:200]:
        listed = Counter(tuple(m) for m in re.findall(r"an? (\w+) (\w+)", item["objects"]))
        assert dict(listed) == parse_counts(item["description"]), item


def test_every_style_is_read_back_and_true_to_the_scene():
    items = generate_items(300, seed=9, levels=(1, 2), max_objects=8)
    for item in items:
        for style in STYLES:
            caption, solution_text = style_text(item, style)
            assert style_of(caption) == style, (style, caption)
            assert is_description(caption) == (style in DESCRIPTIVE)
            stated = answer_from_text(f"{caption}\n{solution_text}", item["question"])
            # the exact solver reads every style but the vague one to the gold answer; the vague one says no count
            assert stated == (None if style == "vague" else item["answer"]), (style, caption, solution_text)
        counts_caption, counts_solution = style_text(item, "counts")
        assert counts_caption == item["query_caption"]
        if item["level"] == 2:  # the operation set up on the two stated counts, the arithmetic left out
            a, b = re.findall(r"\d+", item["query_caption"])
            op = "*" if item["kind"].startswith("product") else "+"
            assert counts_solution == f"Compute {a} {op} {b}." and item["answer"] not in re.findall(
                r"\d+", counts_solution
            )
        else:
            assert counts_solution == item["solution"]
    # a description in no single style's form (run together with an answer, cut off, garbled) is mixed and still
    # describes the image; a text with no piece of a description is other
    for text in ("There are 3 red shapes. \\boxed{3}", "There is 1 green shape.</caption about>", "2 red circles, 1"):
        assert style_of(text) == "mixed" and is_description(text), text
    for text in ("Some.", "boxed{1}", "The answer is", None):
        assert style_of(text) == "other" and not is_description(text), text
    with pytest.raises(ValueError, match="unknown style"):
        style_text(items[0], "poem")


def test_answer_from_text_prefers_the_asked_counts_and_reads_single_objects():
    question = "What is the product of the number of red shapes and the number of circles?"
    assert answer_from_text("There are 3 red shapes. There are 2 circles.", question) == "6"
    # stated counts of other groups are not the asked ones: the per-kind counts decide
    assert answer_from_text("There are 9 blue shapes. 2 red circles, 1 red square.", question) == "6"
    assert answer_from_text("a red circle, a blue circle, a red square.", question) == "4"
    assert answer_from_text("Some red shapes. \\boxed{12}", question) == "12"
    assert answer_from_text("Nothing to see.", question) is None
    assert answer_from_text("There are 3 red shapes.", "Which colour has the most shapes?") is None
