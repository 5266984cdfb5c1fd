"""The RAPID graph with stand-in engines: every mode, hot-swapping, batching, recorded failures."""

import asyncio

import pytest
from PIL import Image, ImageDraw

from rapid_agent import RapidContext, solve, solve_batch
from rapid_agent.api import asolve_batch
from rapid_agent.backends import Completion
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.graphs import get_graph
from rapid_agent.perception import MODES


def scene(n_red: int) -> Image.Image:
    image = Image.new("RGB", (112, 112), "white")
    draw = ImageDraw.Draw(image)
    for i in range(n_red):
        draw.ellipse((4 + 28 * i, 4, 24 + 28 * i, 24), fill=(220, 30, 30))
    return image


def count_red(image: Image.Image) -> int:
    """A 'captioner' that really looks: counts red blobs along the top row of cells."""
    return sum(image.getpixel((14 + 28 * i, 14)) == (220, 30, 30) for i in range(4))


def captioner_fn(request) -> str:
    n = count_red(request.image)
    return f"<caption>{n} red circles.</caption><solution>I count {n}. \\boxed{{{n}}}</solution>"


def reader(request) -> str:
    """A 'reasoner' that answers from the caption when there is one, else from the solution, else guesses 0."""
    text = request.prompt
    if "Description:" in text:
        return f"\\boxed{{{text.split('Description:')[1].split()[0]}}}"
    if "Tentative solution:" in text:
        return f"\\boxed{{{text.split('I count ')[1].split('.')[0]}}}"
    return "\\boxed{0}"


@pytest.fixture
def engines():
    return FunctionEngine(captioner_fn, spec="fn:captioner"), FunctionEngine(reader, spec="fn:reader")


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_end_to_end(engines, mode):
    captioner, reasoner = engines
    out = solve(scene(3), "How many red circles?", answer="3", captioner=captioner, reasoner=reasoner, mode=mode)
    assert out["mode"] == mode and not out["errors"]
    assert out["correct"] is (mode != "none")  # only the text-only baseline cannot see the circles
    assert (out["caption"] is not None) == (mode in ("cap", "qcap", "cap+sol", "qcap+sol"))
    assert (out["solution"] is not None) == (mode in ("sol", "cap+sol", "qcap+sol"))
    assert captioner.num_calls == (0 if mode == "none" else 1)
    assert out["engines"]["reasoner"] == "fn:reader"


def test_final_state_holds_every_node_output(engines):
    captioner, reasoner = engines
    out = solve(scene(2), "How many?", answer="2", captioner=captioner, reasoner=reasoner)
    for key in ("caption", "solution", "reasoner_prompt", "reasoner_output", "prediction", "correct", "verdict"):
        assert out[key] is not None, key
    assert out["prediction"] == "2"
    assert set(out["metrics"]) >= {"captioner_completion_tokens", "reasoner_latency_s", "reasoner_prompt_tokens"}


def test_no_gold_answer_reads_the_answer_without_a_verdict(engines):
    captioner, reasoner = engines
    out = solve(scene(1), "How many?", captioner=captioner, reasoner=reasoner)
    assert out["reasoner_output"] == "\\boxed{1}" and out["prediction"] == "1" and "correct" not in out


def test_reasoner_is_swapped_per_call_without_rebuilding(engines):
    captioner, reasoner = engines
    contrarian = FunctionEngine(lambda r: "\\boxed{42}", spec="fn:contrarian")
    graph = get_graph()
    context = RapidContext(captioner=captioner, reasoner=reasoner)
    first = graph.invoke({"image": scene(2), "question": "q", "answer": "2"}, context=context)
    second = graph.invoke(
        {"image": scene(2), "question": "q", "answer": "2"}, context=context.replace(reasoner=contrarian)
    )
    assert get_graph() is graph
    assert first["correct"] and not second["correct"] and second["prediction"] == "42"
    assert reasoner.num_calls == 1 and contrarian.num_calls == 1


def test_a_batch_of_32_reaches_each_engine_as_one_call():
    # the batch's size is known, so no debounce window may split it, however slowly its samples are prepared
    captioner = FunctionEngine(captioner_fn, delay_s=0.2)
    reasoner = FunctionEngine(reader, delay_s=0.2)
    samples = [{"image": scene(i % 4 + 1), "question": "How many?", "answer": str(i % 4 + 1)} for i in range(32)]
    samples[5]["image"] = b"corrupt"  # fails before any engine: the others must not wait for it
    out = solve_batch(samples, captioner=captioner, reasoner=reasoner)
    assert sum(bool(o["correct"]) for o in out) == 31 and "cannot decode image" in out[5]["errors"][0]
    assert [len(c) for c in captioner.calls] == [31] and [len(c) for c in reasoner.calls] == [31]
    out = asyncio.run(asolve_batch(samples, captioner=captioner, reasoner=reasoner))
    assert sum(bool(o["correct"]) for o in out) == 31
    assert [len(c) for c in captioner.calls] == [31, 31] and [len(c) for c in reasoner.calls] == [31, 31]


def test_concurrent_runs_without_a_known_size_still_share_engine_calls(engines):
    # engines that take time like real ones: requests arriving while one call runs join the next call
    captioner = FunctionEngine(captioner_fn, delay_s=0.2)
    reasoner = FunctionEngine(reader, delay_s=0.2)
    samples = [{"image": scene(i % 4 + 1), "question": "How many?", "answer": str(i % 4 + 1)} for i in range(24)]
    context = RapidContext(captioner=captioner, reasoner=reasoner)
    out = get_graph().batch(samples, context=context, config={"max_concurrency": 24})
    assert all(o["correct"] for o in out)
    assert captioner.num_requests == 24 and captioner.num_calls <= 3


def test_sync_calls_work_inside_a_running_event_loop(engines):
    captioner, reasoner = engines

    async def notebook_cell():  # what a notebook or an async web handler does: sync API, loop already running
        one = solve(scene(2), "How many?", answer="2", captioner=captioner, reasoner=reasoner)
        graph_one = get_graph().invoke(
            {"image": scene(1), "question": "q", "answer": "1"},
            context=RapidContext(captioner=captioner, reasoner=reasoner),
        )
        many = solve_batch(
            [{"image": scene(3), "question": "q", "answer": "3"}], captioner=captioner, reasoner=reasoner
        )
        return one, graph_one, many

    one, graph_one, many = asyncio.run(notebook_cell())
    assert one["correct"] and graph_one["correct"] and many[0]["correct"]


def test_given_perception_skips_the_captioner_and_no_reasoner_stops_after_perception(engines):
    captioner, reasoner = engines
    samples = [{"image": scene(n), "question": "How many?", "answer": str(n)} for n in (1, 2, 3)]
    perceived = solve_batch(samples, captioner=captioner, reasoner=None)
    assert captioner.num_requests == 3 and reasoner.num_calls == 0
    assert all("reasoner_output" not in p and p["captioner_output"] for p in perceived)
    # a second reasoner reads the cached perceptions: no captioner anywhere, no image needed
    cached = [{**s, "image": None, "captioner_output": p["captioner_output"]} for s, p in zip(samples, perceived)]
    scored = solve_batch(cached, captioner=None, reasoner=reasoner)
    assert [s["correct"] for s in scored] == [True, True, True] and captioner.num_requests == 3
    assert [s["caption"] for s in scored] == [p["caption"] for p in perceived]
    with pytest.raises(ValueError, match="captioner: none configured"):
        solve(scene(1), "q", captioner=None, reasoner=reasoner)


def test_missing_perception_parts_are_named_and_counted():
    untagged = FunctionEngine(lambda r: "", spec="fn:silent")
    seen: list[str] = []
    reasoner = FunctionEngine(lambda r: seen.append(r.prompt) or "\\boxed{1}")
    out = solve(scene(1), "How many?", answer="1", captioner=untagged, reasoner=reasoner, mode="qcap+sol")
    assert out["perception_missing"] == ["caption", "solution"]
    assert "gave no description" in seen[0] and "gave no solution" in seen[0] and "None" not in seen[0]


def test_state_is_plain_data_so_a_checkpointer_can_store_and_resume_it(engines, tmp_path):
    from langgraph.checkpoint.memory import InMemorySaver

    from rapid_agent.graphs import build_graph

    captioner, reasoner = engines
    path = tmp_path / "scene.png"
    scene(2).save(path)
    graph = build_graph().compile(checkpointer=InMemorySaver(), interrupt_after=["perceive"])
    context = RapidContext(captioner=captioner, reasoner=reasoner)
    thread = {"configurable": {"thread_id": "t1"}}
    paused = graph.invoke({"image": str(path), "question": "How many?", "answer": "2"}, thread, context=context)
    assert paused["image"] == str(path) and "reasoner_output" not in paused
    resumed = graph.invoke(None, thread, context=context)  # resume the thread from its checkpoint
    assert resumed["correct"] is True and captioner.num_calls == 1 and reasoner.num_calls == 1


def test_engine_failures_and_bad_inputs_are_recorded_not_lost(engines, tmp_path):
    captioner, _ = engines

    def flaky(request):
        if "3 red" in request.prompt:
            raise TimeoutError("reasoner timed out")
        return reader(request)

    reasoner = FunctionEngine(flaky)
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    samples = [
        {"image": scene(2), "question": "q", "answer": "2"},
        {"image": scene(3), "question": "q", "answer": "3"},
        {"image": str(corrupt), "question": "q", "answer": "1"},
        {"image": scene(1), "question": "", "answer": "1"},
    ]
    out = solve_batch(samples, captioner=captioner, reasoner=reasoner)
    assert len(out) == 4
    assert out[0]["correct"] is True
    assert out[1]["errors"] and "reasoner timed out" in out[1]["errors"][0] and "correct" not in out[1]
    assert "cannot decode image" in out[2]["errors"][0] and out[2]["correct"] is None  # bad input: no verdict
    assert "question" in out[3]["errors"][0]


def test_missing_image_is_required_except_in_mode_none(engines):
    captioner, reasoner = engines
    with pytest.raises(ValueError, match="image: required by perception mode 'qcap\\+sol'"):
        solve(None, "What is 2+2?", captioner=captioner, reasoner=reasoner)
    out = solve(None, "What is 2+2?", answer="0", captioner=captioner, reasoner=reasoner, mode="none")
    assert out["correct"] is True and captioner.num_calls == 0


def test_context_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown perception mode 'qcap\\+solution'"):
        RapidContext(mode="qcap+solution")
    with pytest.raises(ValueError, match="reasoner: unknown engine provider 'hff'"):
        RapidContext(reasoner="hff:Qwen/Qwen3-8B")
    with pytest.raises(TypeError, match="unknown RapidContext field"):
        RapidContext().replace(reasonr="hf:x")
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="answer_timeout_s must be > 0"):
            RapidContext(answer_timeout_s=bad)
    with pytest.raises(TypeError, match="reasoner_options: expected a mapping"):
        RapidContext(reasoner_options=["timeout_s=3"])


def test_strict_answers_score_only_a_final_box_and_never_a_truncated_output(engines):
    captioner, _ = engines
    outputs = iter(["The answer is 2.", "<think>so \\boxed{2}", "\\boxed{2}"])
    reasoner = FunctionEngine(lambda r: next(outputs))
    lenient = RapidContext(captioner=captioner, reasoner=reasoner)
    strict = lenient.replace(strict_answers=True)
    sample = {"image": scene(2), "question": "How many?", "answer": "2"}
    assert solve_batch([sample], context=lenient)[0]["correct"] is True  # read from the text
    assert solve_batch([sample], context=strict)[0]["correct"] is False  # the box is inside unfinished thinking
    final = get_graph().invoke({**sample, "captioner_output": "two"}, context=strict)
    assert final["correct"] is True  # a final box after the reasoning
    cut = FunctionEngine(lambda r: "\\boxed{2}")
    cut.generate = lambda requests, gen: [  # an engine that ran out of tokens right after writing the box
        Completion("\\boxed{2}", finish_reason="length") for _ in requests
    ]
    out = get_graph().invoke({**sample, "captioner_output": "two"}, context=strict.replace(reasoner=cut))
    assert out["correct"] is False and out["reasoner_finish_reason"] == "length" and "cut off" in out["verdict"]


def test_an_answer_check_that_could_not_run_is_an_error_not_a_wrong_answer(engines, monkeypatch):
    from rapid_agent.answers import Verdict

    async def broken_checker(*args, **kwargs):  # what acheck_answer says when no worker process could check
        return Verdict(None, "3", "verification error: the worker pool is broken")

    monkeypatch.setattr("rapid_agent.graphs.nodes.acheck_answer", broken_checker)
    captioner, reasoner = engines
    out = solve(scene(3), "How many red circles?", answer="3", captioner=captioner, reasoner=reasoner)
    assert out["correct"] is None and out["prediction"] == "3"  # undecided: neither right nor wrong
    assert out["verdict"] == "verification error: the worker pool is broken"
    assert out["errors"] == ["answer check: verification error: the worker pool is broken"]


def test_direct_mode_scores_the_captioners_own_answer_without_a_reasoner(engines):
    from rapid_agent.prompts import DEFAULT_PROMPTS

    captioner, reasoner = engines
    question = "How many red circles?"
    out = solve(scene(3), question, answer="3", captioner=captioner, reasoner=reasoner, mode="direct")
    assert out["correct"] is True and out["prediction"] == "3" and not out["errors"]
    assert reasoner.num_calls == 0 and out.get("reasoner_output") is None and "reasoner" not in out["engines"]
    assert captioner.calls[0][0].prompt == DEFAULT_PROMPTS.direct_answer.format(question=question)
    wrong = solve(scene(2), question, answer="3", captioner=captioner, reasoner=None, mode="direct")
    assert wrong["correct"] is False and wrong["prediction"] == "2"  # scored with no reasoner configured at all
