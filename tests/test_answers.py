"""Answer checking: a table of answers in the benchmarks' own formats, letters, the training-mode parse, inputs.

The table's rows follow the answer formats of MathVista, MathVerse, MathVision, WeMath, LogicVista, DynaMath and
MMMU: option letters in every form reasoners write them, option text, integers, floats with a precision, fractions,
percentages, units, degrees, LaTeX, scientific notation, sets, intervals, several boxes, free-form Yes/No.
"""

from __future__ import annotations

import pytest

from rapid_agent.answers import (
    SOURCES,
    Verdict,
    check_answer,
    check_answers,
    choice_letter,
    extract_answer,
    is_choice_gold,
    last_boxed,
    strip_thinking,
)

COLOURS = ["red", "blue", "green", "yellow"]
NUMBERS = ["2", "4", "6", "8"]
LATEX_OPTIONS = [r"$\frac{1}{2}$", r"$\frac{\sqrt{3}}{2}$", r"$\sqrt{3}$", "$1$"]

# (output, gold, choices, correct)
CASES = {
    # --- multiple choice: letters in the box
    "letter": (r"\boxed{B}", "B", COLOURS, True),
    "letter wrong": (r"\boxed{C}", "B", COLOURS, False),
    "lowercase letter": (r"\boxed{b}", "B", COLOURS, True),
    "parenthesised lowercase": (r"\boxed{(c)}", "C", COLOURS, True),
    "bracketed": (r"\boxed{[D]}", "D", COLOURS, True),
    "letter with full stop": (r"\boxed{A.}", "A", COLOURS, True),
    "Option C": (r"\boxed{Option C}", "C", COLOURS, True),
    "option (c)": (r"\boxed{option (c)}", "C", COLOURS, True),
    "text-wrapped letter": (r"\boxed{\text{B}}", "B", COLOURS, True),
    "bold-wrapped letter": (r"\boxed{\textbf{(B)}}", "B", COLOURS, True),
    "letter and its text": (r"\boxed{B. blue}", "B", COLOURS, True),
    "parenthesised letter and text": (r"\boxed{(B) blue}", "B", COLOURS, True),
    "two options with or": (r"\boxed{B or C}", "B", COLOURS, False),
    "two options with and": (r"\boxed{B and C}", "C", COLOURS, False),
    "two options with a comma": (r"\boxed{B, C}", "B", COLOURS, False),
    "two parenthesised options": (r"\boxed{(B) or (C)}", "B", COLOURS, False),
    "option text in the box": (r"\boxed{blue}", "B", COLOURS, True),
    "option text, other case": (r"\boxed{Blue}", "B", COLOURS, True),
    "option text, wrong": (r"\boxed{green}", "B", COLOURS, False),
    "not an option": (r"\boxed{purple}", "B", COLOURS, False),
    # --- multiple choice: the gold in other forms
    "gold B. blue": (r"\boxed{B}", "B. blue", COLOURS, True),
    "gold (B)": (r"\boxed{B}", "(B)", COLOURS, True),
    "gold given as option text": (r"\boxed{B}", "blue", COLOURS, True),
    "gold given as option text, wrong": (r"\boxed{C}", "blue", COLOURS, False),
    "gold as option text, box as option text": (r"\boxed{blue}", "blue", COLOURS, True),
    "gold letter without choices": (r"\boxed{(b)}", "B", [], True),
    "MathVista numeric options": (r"\boxed{4}", "4", NUMBERS, True),
    "numeric options, letter boxed": (r"\boxed{(B)}", "4", NUMBERS, True),
    "numeric options, equal value": (r"\boxed{4.0}", "4", NUMBERS, True),
    "numeric options, wrong": (r"\boxed{6}", "4", NUMBERS, False),
    "LaTeX options, value boxed": (r"\boxed{0.5}", "A", LATEX_OPTIONS, True),
    "LaTeX options, other form": (r"\boxed{\frac{3^{1/2}}{2}}", "B", LATEX_OPTIONS, True),
    "LaTeX options, wrong value": (r"\boxed{0.5}", "C", LATEX_OPTIONS, False),
    # --- multiple choice without a box (default mode)
    "the answer is (A)": ("The answer is (A).", "A", COLOURS, True),
    "Answer: C": ("Comparing the bars...\n**Answer: C**", "C", COLOURS, True),
    "option D is correct": ("So option D is correct.", "D", COLOURS, True),
    "whole output a lowercase letter": ("b", "B", COLOURS, True),
    "whole output the option text": ("Blue.", "B", COLOURS, True),
    "option named last": ("It looks red at first, but it is blue.", "B", COLOURS, True),
    "option named last, wrong": ("It is red, no wait, green.", "A", COLOURS, False),
    "no letter, no option": ("I cannot tell.", "A", COLOURS, False),
    # --- integers, negatives, separators
    "integer": (r"so there are \boxed{42} apples", "42", None, True),
    "integer wrong": (r"\boxed{41}", "42", None, False),
    "negative": (r"\boxed{-3}", "-3", None, True),
    "sign matters": (r"\boxed{-3}", "3", None, False),
    "thousands separator in the box": (r"\boxed{1,000}", "1000", None, True),
    "thousands separator, space": (r"\boxed{7 425 000}", "7425000", None, True),
    "thousands and decimals in prose": ("The total is 1,000.99.", "1000.99", None, True),
    "integer gold given as a number": (r"\boxed{12}", 12, None, True),
    # --- floats with a precision (MathVista)
    "float, trailing zero": (r"\boxed{1.50}", "1.5", None, True),
    "float with precision 2": (r"\boxed{0.33}", "0.33", None, True),
    "float wrong": (r"\boxed{2.4}", "2.5", None, False),
    "float gold given as a number": (r"\boxed{2.5}", 2.5, None, True),
    "final answer sentence": ("The final answer is 7.78.", "7.78", None, True),
    "final answer sentence, not cut to an integer": ("The final answer is 7.78.", "7", None, False),
    # --- fractions, LaTeX, roots, pi
    "fraction against decimal": (r"\boxed{\frac{1}{2}}", "0.5", None, True),
    "decimal against fraction": (r"\boxed{0.5}", r"\frac{1}{2}", None, True),
    "slash fraction": (r"\boxed{2.50}", "5/2", None, True),
    "dfrac in dollars": (r"The probability is $\dfrac{1}{3}$.", "1/3", None, True),
    "dfrac in dollars is not its denominator": (r"The probability is $\dfrac{1}{3}$.", "3", None, False),
    "LaTeX in parentheses": (r"The ratio is \(\frac{2}{3}\)", r"\frac{2}{3}", None, True),
    "golden ratio is not 2": (r"$\frac{1+\sqrt{5}}{2}$", "2", None, False),
    "roots": (r"\boxed{2\sqrt{3}}", r"\sqrt{12}", None, True),
    "nested braces": (r"\boxed{\frac{1}{\sqrt{4}}}", "1/2", None, True),
    "pi numerically": (r"\boxed{6.283185}", r"2\pi", None, True),
    "equation": (r"\boxed{x = 3}", "3", None, True),
    # --- percentages, units, degrees, scientific notation
    "percent against number": (r"\boxed{25\%}", "25", None, True),
    "percent gold": (r"\boxed{25}", "25%", None, True),
    "percent against fraction": (r"\boxed{25\%}", "0.25", None, True),
    "unit in the box": (r"\boxed{5 cm}", "5", None, True),
    "text unit in dollars": (r"The side is $5\text{ cm}$.", "5", None, True),
    "unit in the gold": (r"\boxed{5\text{ cm}}", "5 cm", None, True),
    "unit, wrong number": (r"\boxed{6 cm}", "5", None, False),
    "degrees": (r"\boxed{30^\circ}", "30", None, True),
    "degree sign": (r"\boxed{30°}", "30", None, True),
    "scientific LaTeX": (r"\boxed{1.5 \times 10^{3}}", "1500", None, True),
    "scientific e-notation": (r"\boxed{1.5e3}", "1500", None, True),
    "scientific gold": (r"\boxed{3 \times 10^{8}}", "3e8", None, True),
    "scientific, wrong exponent": (r"\boxed{3 \times 10^{7}}", "3e8", None, False),
    # --- sets, intervals, several boxes
    "set": (r"\boxed{\{1, 2\}}", r"\{1,2\}", None, True),
    "set order": (r"\boxed{\{2, 1\}}", r"\{1,2\}", None, True),
    "interval": (r"\boxed{(1, 2]}", "(1,2]", None, True),
    "interval ends matter": (r"\boxed{(1, 2]}", "[1,2]", None, False),
    "two boxes make a set": (r"The roots are \boxed{1} and \boxed{2}.", r"\{1,2\}", None, True),
    "two boxes are not their last": (r"The roots are \boxed{1} and \boxed{2}.", "2", None, False),
    "a revised box": (
        "First \\boxed{3}.\n\nWait: the small blue circle in the corner counts as well, which I missed. "
        "So the answer is \\boxed{4}.",
        "4",
        None,
        True,
    ),
    # --- free-form text
    "Yes in a box": (r"\boxed{Yes}", "Yes", None, True),
    "yes against Yes": (r"\boxed{yes}", "Yes", None, True),
    "Yes in text-wrapper": (r"\boxed{\text{Yes}}", "Yes", None, True),
    "No against Yes": (r"\boxed{No}", "Yes", None, False),
    "yes in prose": ("Yes, the red bar is longer.", "Yes", None, True),
    "no in prose": ("Comparing both, no.", "No", None, True),
    "word answer": (r"\boxed{Blue}", "blue", None, True),
    "word answer wrong": (r"\boxed{green}", "blue", None, False),
    # --- thinking
    "box after think": (r"<think>maybe \boxed{4}</think> The answer is \boxed{3}.", "3", None, True),
    "box in think does not count": (r"<think>surely \boxed{3}</think> so \boxed{4}", "3", None, False),
    "unclosed think, default mode reads it": (r"<think>so it is \boxed{5}", "5", None, True),
    # --- no box
    "sum in prose": ("There are 3 + 2 = 5 shapes in total.", "5", None, True),
    "answer is 12": ("The answer is 12.", "12", None, True),
    "whole output a number": ("12", "12", None, True),
    "nothing to read": ("I cannot tell from the description.", "7", None, False),
}


@pytest.mark.parametrize(("output", "gold", "choices", "correct"), CASES.values(), ids=CASES.keys())
def test_answer_table(output, gold, choices, correct):
    verdict = check_answer(output, gold, choices=choices)
    assert verdict.correct is correct, verdict
    assert verdict.extracted_from in (*SOURCES, None)


def test_the_table_in_one_batch_agrees_with_one_by_one():
    outputs, golds, choices, expected = zip(*CASES.values())
    verdicts = check_answers(outputs, golds, choices=choices)
    assert [v.correct for v in verdicts] == list(expected)


@pytest.mark.parametrize(
    ("output", "source"),
    [
        (r"so \boxed{5}", "boxed"),
        ("The final answer is 7.78.", "math-verify"),
        ("12", "text"),
    ],
)
def test_verdict_says_where_the_answer_came_from(output, source):
    assert check_answer(output, "5").extracted_from == source


def test_an_output_with_nothing_to_read_says_so_without_asking_math_verify():
    verdict = check_answer("I cannot tell from the description.", "7")
    assert verdict == Verdict(False, None, "no \\boxed{} answer and no final answer found in the output")


def test_letter_sources():
    assert check_answer("The answer is (B).", "B", choices=COLOURS).extracted_from == "letter"
    assert check_answer("I think it is blue", "B", choices=COLOURS).extracted_from == "option text"
    assert check_answer(r"\boxed{blue}", "B", choices=COLOURS).extracted_from == "boxed"


# --- the training-mode parse -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "gold", "choices", "default", "final_box_only"),
    [
        ("The answer is 5.", "5", None, True, False),
        (r"<think>so it is \boxed{5}", "5", None, True, False),
        (r"<think>so it is</think> \boxed{5}", "5", None, True, True),
        ("The answer is (B).", "B", COLOURS, True, False),
        ("It is blue.", "B", COLOURS, True, False),
        (r"\boxed{b}", "B", COLOURS, True, True),
        (r"\boxed{blue}", "B", COLOURS, True, True),
        ("Yes.", "Yes", None, True, False),
        (r"First \boxed{3}, on reflection \boxed{4}", "4", None, False, True),  # default: the set {3, 4}
        (r"\boxed{1} and \boxed{2}", r"\{1,2\}", None, True, False),
    ],
)
def test_final_box_only_reads_nothing_but_the_last_box_after_the_reasoning(
    output, gold, choices, default, final_box_only
):
    assert check_answer(output, gold, choices=choices).correct is default
    assert check_answer(output, gold, choices=choices, final_box_only=True).correct is final_box_only


def test_a_truncated_output_is_wrong_in_training_mode_only():
    verdict = check_answer(r"\boxed{5}", "5", final_box_only=True, finish_reason="length")
    assert not verdict.correct and "cut off" in verdict.reason and "length" in verdict.reason
    assert check_answer(r"\boxed{5}", "5", final_box_only=True, finish_reason="stop").correct
    assert check_answer(r"\boxed{5}", "5", finish_reason="length").correct  # evaluation reads what is there


def test_training_mode_reasons():
    assert "never closed" in check_answer(r"<think>\boxed{5}", "5", final_box_only=True).reason
    assert "no \\boxed{}" in check_answer("5", "5", final_box_only=True).reason


# --- extraction ---------------------------------------------------------------------------------------------------


def test_last_boxed_balances_nested_braces_and_skips_unclosed_boxes():
    assert last_boxed(r"x \boxed{\frac{1}{\sqrt{4}}} y") == r"\frac{1}{\sqrt{4}}"
    assert last_boxed(r"\boxed{1} then \boxed{2") == "1"
    assert last_boxed(r"\boxed{ \boxed{7}") == "7"
    assert last_boxed(r"\fbox{3}") == "3"
    assert last_boxed("no box } here {") is None


@pytest.mark.timeout(30)
def test_last_boxed_is_linear_on_many_unclosed_boxes():
    # quadratic scanning took 18 s for 10,000 unclosed boxes; 100,000 would take half an hour
    text = "\\boxed{" * 100_000 + r"\boxed{9}"
    assert last_boxed(text) == "9"
    assert last_boxed("\\boxed{" * 100_000) is None
    assert check_answer("\\boxed{" * 100_000, "3").correct is False


def test_strip_thinking():
    assert strip_thinking("<think>a</think>b</think> c") == " c"
    assert strip_thinking("plain") == "plain"


def test_extract_answer_reports_what_the_check_reads():
    assert extract_answer(r"\boxed{7} because 3 + 4 and 9") == ("7", "boxed")
    assert extract_answer(r"The probability is $\dfrac{1}{3}$.") == (r"\frac{1}{3}", "math-verify")
    assert extract_answer(r"\boxed{(c)}", choices=COLOURS) == ("C", "boxed")
    assert extract_answer("The answer is (A).", choices=COLOURS) == ("A", "letter")
    assert extract_answer("5", final_box_only=True) == (None, None)


def test_choice_letter():
    assert choice_letter("Option C") == "C"
    assert choice_letter("(b)") == "B"
    assert choice_letter("B or C") is None
    assert choice_letter("purple", ["red", "blue"]) is None
    assert choice_letter("BLUE", ["red", "blue"]) == "B"
    assert choice_letter("E", ["red", "blue"]) is None  # no fifth option


def test_is_choice_gold():
    assert is_choice_gold("B") and is_choice_gold("B. blue") and is_choice_gold("(C)")
    assert is_choice_gold("blue", ["red", "blue"]) and is_choice_gold("b", ["red", "blue"])
    assert not is_choice_gold("b") and not is_choice_gold("12") and not is_choice_gold("A:B=1")


# --- inputs -------------------------------------------------------------------------------------------------------


def test_none_output_is_a_wrong_verdict_not_a_crash():
    verdict = check_answer(None, "5")
    assert verdict == Verdict(False, None, "no output to check (output is None)")


def test_numbers_are_accepted_as_outputs_and_golds():
    assert check_answer(5, 5).correct
    assert check_answer(0.5, r"\frac{1}{2}").correct
    assert check_answer(r"\boxed{1500}", 1.5e3).correct


@pytest.mark.parametrize("gold", [None, "", "   "])
def test_a_missing_gold_is_an_error_naming_it(gold):
    with pytest.raises(ValueError, match="gold"):
        check_answer(r"\boxed{5}", gold)


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf"), "5", True])
def test_timeout_must_be_positive(timeout_s):
    with pytest.raises(ValueError, match="timeout_s"):
        check_answer(r"\boxed{5}", "5", timeout_s=timeout_s)
    with pytest.raises(ValueError, match="timeout_s"):
        check_answers([r"\boxed{5}"], ["5"], timeout_s=timeout_s)


def test_bad_argument_types_name_the_argument():
    with pytest.raises(TypeError, match="output"):
        check_answer(["5"], "5")
    with pytest.raises(TypeError, match="gold"):
        check_answer("5", {"answer": 5})
    with pytest.raises(TypeError, match="choices"):
        check_answer("B", "B", choices="ABCD")
    with pytest.raises(ValueError, match="choices"):
        check_answer("B", "B", choices=[str(i) for i in range(27)])


def test_check_answers_validates_lengths_before_checking():
    with pytest.raises(ValueError, match="golds has 1 entries for 2 outputs"):
        check_answers(["1", "2"], ["1"])
    with pytest.raises(ValueError, match="choices"):
        check_answers(["1"], ["1"], choices=[None, None])
    with pytest.raises(TypeError, match="gold"):  # the bad second item is found before the first is checked
        check_answers([r"\boxed{\frac{1}{2}}", "2"], ["0.5", object()])
