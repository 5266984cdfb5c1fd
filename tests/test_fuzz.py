"""Fuzzing the whole graph: malformed images, questions, answers, choices and model outputs thrown at
`solve_batch` come back as one result per sample, in order, each scored or carrying its error: no crash, no hang past
the configured timeouts, no lost sample."""

import io
import random
import time

from PIL import Image

from rapid_agent import RapidContext, solve_batch
from rapid_agent.backends import Completion, Engine

HARD = "\\boxed{10^{10^{8}}}"  # sends sympy into a computation that holds the GIL


def _png(size=(40, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = [
    None,
    "",
    b"",
    b"\x89PNG\r\n\x1a\n garbage",
    _png()[:50],
    _png(),
    _png((4000, 2)),
    _png((1, 1)),
    _png((64, 64), "RGBA"),
    _png((3000, 3000)),
    "https://example.com/a.png",
    "/no/such/file.png",
    "data:image/png;base64,@@@",
    12345,
    [_png(), _png()],
    [[_png()]],
    Image.new("P", (30, 30)),
]
QUESTIONS = ["How many?", "", "   ", None, 5, "x" * 100_000, "¿Cuántos? 🙂\u0000", "q" * 19_999]
ANSWERS = [None, "", "3", 3, 3.5, "\\boxed{", "10^{10^{8}}", "B", "B. blue", "[1, 2]", "\\frac{1}{3}"]
CHOICES = [None, [], "red", ["red", "blue"], [1, 2], ["", "x"], [f"o{i}" for i in range(30)], {"a": 1}]
OUTPUTS = [
    "\\boxed{3}",
    HARD,
    "",
    "\\boxed{" * 5_000,
    "<think>" + "\\boxed{1}" * 1_000,
    "\\boxed{B or C}",
    "The answer is (b).",
    "1,000.99",
    "x" * 200_000,
    "\\boxed{\\frac{1}{0}}",
    "\ud800 lone surrogate",
]


class ChaosEngine(Engine):
    """Replies with a random malformed output, a random exception, or a completion whose text is not even a string."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.spec = f"chaos:{seed}"

    def generate(self, requests, gen):
        out = []
        for _ in requests:
            roll = self.rng.random()
            if roll < 0.1:
                out.append(RuntimeError("engine exploded"))
            elif roll < 0.15:
                out.append(Completion(None))  # type: ignore[arg-type]  # a broken engine
            else:
                out.append(
                    Completion(self.rng.choice(OUTPUTS), finish_reason=self.rng.choice([None, "stop", "length"]))
                )
        return out


def _samples(rng: random.Random, n: int) -> list:
    samples = []
    for i in range(n):
        sample = {
            "image": rng.choice(IMAGES),
            "question": rng.choice(QUESTIONS),
            "answer": rng.choice(ANSWERS),
            "choices": rng.choice(CHOICES),
        }
        if rng.random() < 0.2:
            sample["captioner_output"] = rng.choice(OUTPUTS)
        if rng.random() < 0.1:
            sample = rng.choice([None, "not a dict", {"question": "q", "unknown_field": 1}, {}])
        samples.append(sample)
        if isinstance(sample, dict):
            sample["id"] = str(i)
    return samples


#: what an error says first: the sample's own data, another failure of its run, an engine, or the answer checker
ERROR_KINDS = ("input: ", "error: ", "captioner: ", "reasoner: ", "answer check: ")


def assert_one_outcome(sample: object, result: dict) -> None:
    """A result is either a failure that says what failed (no verdict) or a run that reached the score node."""
    errors = result.get("errors") or []
    if errors:
        assert all(isinstance(e, str) and e.startswith(ERROR_KINDS) for e in errors), errors
        assert result.get("correct") is None, result  # a failed run is no verdict
        return
    assert isinstance(result.get("reasoner_output"), str), result
    if isinstance(sample, dict) and sample.get("answer") not in (None, ""):
        assert isinstance(result["correct"], bool) and isinstance(result["verdict"], str), result
    else:
        assert result.get("correct") is None and "prediction" in result, result


def test_solve_batch_survives_malformed_everything():
    timeout_s = 2.0
    for seed in range(3):
        rng = random.Random(seed)
        samples = _samples(rng, 40)
        for strict in (False, True):
            context = RapidContext(
                captioner=ChaosEngine(seed),
                reasoner=ChaosEngine(seed + 100),
                answer_timeout_s=timeout_s,
                strict_answers=strict,
                mode=rng.choice(["qcap+sol", "cap", "sol", "none"]),
            )
            started = time.perf_counter()
            out = solve_batch(samples, context=context)
            elapsed = time.perf_counter() - started
            assert len(out) == len(samples)
            for sample, result in zip(samples, out):
                assert isinstance(result, dict)
                if isinstance(sample, dict) and "id" in sample:
                    assert result.get("id") == sample["id"]  # in order, none lost
                assert_one_outcome(sample, result)
                if not isinstance(sample, dict):
                    assert "a sample is a dict" in result["errors"][0]
            # every hard check ends at its timeout; the checks run in parallel workers, so a batch takes a few of them
            assert elapsed < 60, f"seed {seed}: {elapsed:.0f} s"


def test_solve_batch_survives_a_server_that_answers_garbage():
    from tests.http_server import FakeChatServer, Reply, chat_reply

    replies = [
        lambda rng: chat_reply(rng.choice(OUTPUTS)),
        lambda rng: Reply(body={"choices": [{"message": "a string, not a message"}]}),
        lambda rng: Reply(body={"choices": [{"message": {"content": [{"type": "text", "text": "\\boxed{3}"}]}}]}),
        lambda rng: Reply(body={"choices": [{"message": {"content": "\\boxed{3}"}}], "usage": {"prompt_tokens": "x"}}),
        lambda rng: Reply(body={"choices": []}),
        lambda rng: Reply(body=["not", "an", "object"]),
        lambda rng: Reply(body="<html>bad gateway</html>"),
        lambda rng: Reply(status=400, body={"error": {"message": "Authorization: Bearer sk-" + "a" * 40}}),
        lambda rng: Reply(status=500, body={"error": {"message": "x" * 100_000}}),
        lambda rng: Reply(body={"choices": [{"message": {"content": None, "refusal": "no"}}]}),
    ]
    rng = random.Random(7)
    with FakeChatServer(lambda seen: rng.choice(replies)(rng)) as server:
        context = RapidContext(
            captioner=None,
            reasoner=f"openai:m@{server.base_url}",
            reasoner_options={"max_retries": 1, "backoff_s": 0.01, "timeout_s": 5.0},
            answer_timeout_s=2.0,
        )
        samples = [{"id": str(i), "question": "How many?", "answer": "3", "captioner_output": "3"} for i in range(60)]
        out = solve_batch(samples, context=context)
    assert [o["id"] for o in out] == [s["id"] for s in samples]
    assert all(o.get("errors") or o.get("correct") in (True, False) for o in out)
    errors = [e for o in out for e in o.get("errors", [])]
    assert errors and all(len(e) <= 600 and "sk-aaaaaaaa" not in e for e in errors)
    assert any(o.get("correct") for o in out)  # the well-formed replies among them were scored
