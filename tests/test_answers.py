"""Answer extraction and checking: boxes, nesting, think tags, fractions, decimals, letters, no box, threads."""

import threading

import pytest

from rapid_agent.answers import check_answer, choice_letter, extract_answer, last_boxed


@pytest.mark.parametrize(
    ("output", "gold", "correct"),
    [
        (r"so the answer is \boxed{\frac{1}{2}}", "0.5", True),
        (r"\boxed{0.5}", r"\frac{1}{2}", True),
        (r"\boxed{2.50}", "5/2", True),
        (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{\sqrt2}{2}", True),
        (r"\boxed{3}", "4", False),
        (r"first \boxed{3}, on reflection \boxed{4}", "4", True),
        (r"<think>maybe \boxed{4}</think> The answer is \boxed{3}.", "3", True),
        (r"<think>surely \boxed{3}</think> so \boxed{4}", "3", False),
        ("There are 3 + 2 = 5 shapes in total.", "5", True),
        ("The answer is 12.", "12", True),
    ],
)
def test_math_answers(output, gold, correct):
    assert check_answer(output, gold).correct is correct


def test_nested_braces_are_balanced():
    assert last_boxed(r"x \boxed{\frac{1}{\sqrt{4}}} y") == r"\frac{1}{\sqrt{4}}"
    assert check_answer(r"\boxed{\frac{1}{\sqrt{4}}}", "1/2").correct


def test_fallback_is_recorded_as_such():
    verdict = check_answer("3 red and 2 blue, so 5.", "5")
    assert verdict.correct and verdict.extracted_from == "fallback"
    assert check_answer(r"\boxed{5}", "5").extracted_from == "boxed"


def test_unparseable_output_is_a_recorded_failure_not_an_exception():
    verdict = check_answer("I cannot tell from the description.", "7")
    assert verdict.correct is False and verdict.prediction is None
    assert "no \\boxed{}" in verdict.reason


@pytest.mark.parametrize(
    ("output", "gold", "correct"),
    [
        (r"\boxed{B}", "B", True),
        (r"\boxed{(B)}", "B", True),
        (r"\boxed{B. blue}", "B", True),
        (r"\boxed{\text{B}}", "B", True),
        (r"\boxed{C}", "B", False),
        ("The answer is (A).", "A", True),
        (r"\boxed{blue}", "B", True),
        (r"\boxed{green}", "B", False),
        ("B", "B", True),
        ("The colour that appears most often appears to be blue.", "B", True),
        ("It is red, no wait, green.", "A", False),
    ],
)
def test_multiple_choice_letters(output, gold, correct):
    assert check_answer(output, gold, choices=["red", "blue", "green"]).correct is correct


def test_choice_letter_without_a_letter():
    assert choice_letter("purple", ["red", "blue"]) is None
    verdict = check_answer(r"\boxed{purple}", "A", choices=["red", "blue"])
    assert not verdict.correct and "no option letter" in verdict.reason


def test_extract_prefers_box_over_trailing_numbers():
    assert extract_answer(r"\boxed{7} because 3 + 4 and 9")[0] == "7"


def test_checking_works_off_the_main_thread():
    # math-verify's signal-based timeouts raise outside the main thread unless disabled; we disable and bound
    results = []
    worker = threading.Thread(target=lambda: results.append(check_answer(r"\boxed{0.25}", r"\frac{1}{4}")))
    worker.start()
    worker.join(30)
    assert results and results[0].correct
