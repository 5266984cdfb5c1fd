"""A seeded, verifiable synthetic visual-reasoning world: coloured shapes on a grid, questions with gold answers.

    items = generate_items(8, seed=0)                  # dicts: image, question, answer, description, solution, ...
    world = build_world(1000, 200, seed=0)             # datasets.DatasetDict with a held-out "test" split
    split_items(48, seed=1, split="test", exclude=seen)  # another seed's test stream, minus signatures seen
    answer_from_description(item["description"], item["question"], item["choices"])  # oracle reasoner

Images are small (side a multiple of 28) so each object sits in its own Qwen2.5-VL visual token; descriptions
state counts plainly ("3 red circles, 1 blue square."), and each question's query-related caption states only the
counts it asks about ("There are 3 red shapes. There is 1 square."), which a small text-only reasoner can work from.
"""

from rapid_agent.world.dataset import FEATURES, build_world, generate_items, split_items
from rapid_agent.world.oracle import answer_from_description, answer_from_text, parse_counts, states_a_count
from rapid_agent.world.questions import TEMPLATES, Question, ask, describe, list_objects, query_caption, solution
from rapid_agent.world.scenes import COLOURS, PALETTE, SHAPES, Scene, SceneObject, render, sample_scene
from rapid_agent.world.styles import DESCRIPTIVE, KINDS, STYLES, describes, is_description, style_of, style_text

__all__ = [
    "COLOURS",
    "DESCRIPTIVE",
    "FEATURES",
    "KINDS",
    "PALETTE",
    "SHAPES",
    "STYLES",
    "TEMPLATES",
    "Question",
    "Scene",
    "SceneObject",
    "answer_from_description",
    "answer_from_text",
    "ask",
    "build_world",
    "describe",
    "describes",
    "generate_items",
    "is_description",
    "list_objects",
    "parse_counts",
    "query_caption",
    "render",
    "sample_scene",
    "solution",
    "split_items",
    "states_a_count",
    "style_of",
    "style_text",
]
