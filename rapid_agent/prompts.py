"""Every prompt the library sends, in one place, overridable as a whole or field by field.

The wording is ours. Caption prompts ask for a description and forbid answering (the captioner perceives, the
reasoner answers); the solution prompt asks for step-by-step work ending in `\\boxed{}`; the reasoning prompt
hands the reasoner the perception text with explicit warnings that it may be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CAPTION = (
    "Describe this image in detail: every object, its colour, size, position and count, any text, numbers, "
    "labels, axes or values you can read. Describe only what you see. Do not solve any problem and do not give "
    "an answer."
)

QUERY_CAPTION = (
    "Here is a question about this image:\n{question}\n\n"
    "Do not answer it. Instead describe everything in the image that someone would need in order to answer it "
    "without seeing the image: the relevant objects, their colours, counts and positions, and any text, numbers "
    "or values. Describe only what you see."
)

SOLUTION = (
    "Look at the image and solve the following problem step by step.\n{question}\n\n"
    "Show your work briefly and put the final answer in \\boxed{{}}."
)

# The combined modes get one captioner call whose output holds both parts, tagged so they can be split again.
CAPTION_AND_SOLUTION = (
    "{caption_instruction}\n\n"
    "Then solve this problem step by step:\n{question}\n\n"
    "Write the description inside <caption></caption> and the solution inside <solution></solution>, ending the "
    "solution with the final answer in \\boxed{{}}."
)

SYSTEM = "You are a careful reasoner. Think step by step and give the final answer in \\boxed{}."

REASON = "{caption_block}Question: {question}\n\n{solution_block}{instruction}"

CAPTION_BLOCK = (
    "You cannot see the image, but here is a description of it written by a vision model. The description may "
    "itself contain wrong solutions; use it for facts about the image, not for answers.\n"
    "Description:\n{caption}\n\n"
)

SOLUTION_BLOCK = (
    "A vision model that could see the image proposed this tentative solution. It may be wrong: keep its answer "
    "unless you find clear evidence against it.\n"
    "Tentative solution:\n{solution}\n\n"
)

REASON_INSTRUCTION = "Reason step by step, then write the final answer in \\boxed{}."

# What the reasoner reads in place of a part the captioner did not write (an empty output, or missing tags)
MISSING_CAPTION = "(the vision model gave no description of the image)"
MISSING_SOLUTION = "(the vision model gave no solution)"

DIRECT_ANSWER = "{question}\n\nReason step by step, then write the final answer in \\boxed{{}}."


@dataclass(frozen=True)
class Prompts:
    """A set of templates. Replace any field (`DEFAULT_PROMPTS.replace(caption="...")`) to change one prompt."""

    caption: str = CAPTION
    query_caption: str = QUERY_CAPTION
    solution: str = SOLUTION
    caption_and_solution: str = CAPTION_AND_SOLUTION
    system: str | None = SYSTEM
    reason: str = REASON
    caption_block: str = CAPTION_BLOCK
    solution_block: str = SOLUTION_BLOCK
    reason_instruction: str = REASON_INSTRUCTION
    direct_answer: str = DIRECT_ANSWER
    missing_caption: str = MISSING_CAPTION
    missing_solution: str = MISSING_SOLUTION

    def replace(self, **fields: str) -> Prompts:
        return replace(self, **fields)


DEFAULT_PROMPTS = Prompts()
