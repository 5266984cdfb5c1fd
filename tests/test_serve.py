"""The server end to end over loopback with the official `openai` client (sync, async, streaming), against stand-in
engines that record how they were called."""

import asyncio
import logging

import httpx
import openai
import pytest

from rapid_agent import RapidContext
from rapid_agent.backends import GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.serve import ServeConfig
from tests.serve_helpers import (
    CAPTION,
    RecordingEngine,
    StreamingEngine,
    data_url,
    png_bytes,
    running,
    tag_of,
    user_message,
)


def captioner(**kwargs):
    return FunctionEngine(
        lambda r: f"<caption>{tag_of(r)}: two red circles</caption><solution>so 2</solution>", **kwargs
    )


def reasoner(**kwargs):
    return FunctionEngine(lambda r: f"For {tag_of(r)} there are two, so \\boxed{{2}}", **kwargs)


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=30)


def test_sync_client_gets_the_rapid_answer_usage_and_verdict():
    cap, rea = captioner(spec="stand-in:cap"), reasoner(spec="stand-in:rea")
    with running({"rapid": RapidContext(captioner=cap, reasoner=rea)}) as server:
        reply = client(server).chat.completions.create(
            model="rapid",
            messages=user_message("Q1: how many circles?", data_url()),
            extra_body={"rapid": {"answer": "2"}},
        )
        wrong = client(server).chat.completions.create(
            model="rapid", messages=user_message("Q2: how many?", data_url()), extra_body={"rapid": {"answer": "3"}}
        )
    assert reply.model == "rapid" and reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "For Q1 there are two, so \\boxed{2}"
    assert reply.choices[0].finish_reason == "stop"
    rapid = reply.model_extra["rapid"]
    assert rapid["caption"] == "Q1: two red circles" and rapid["solution"] == "so 2"
    assert rapid["prediction"] == "2" and rapid["correct"] is True and rapid["verdict"]
    assert rapid["engines"] == {"captioner": "stand-in:cap", "reasoner": "stand-in:rea"}
    # usage covers both models (the stand-ins count words as tokens)
    m = rapid["metrics"]
    assert reply.usage.prompt_tokens == m["captioner_prompt_tokens"] + m["reasoner_prompt_tokens"] > 0
    assert reply.usage.completion_tokens == m["captioner_completion_tokens"] + m["reasoner_completion_tokens"] > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert wrong.model_extra["rapid"]["correct"] is False
    # the captioner got the image and the question; the reasoner got text only
    assert cap.calls[0][0].images and "Q1" in cap.calls[0][0].prompt
    assert not rea.calls[0][0].images and "Q1: two red circles" in rea.calls[0][0].prompt


def test_without_a_gold_answer_the_answer_is_parsed_and_there_is_no_verdict():
    with running({"rapid": RapidContext(captioner=captioner(), reasoner=reasoner())}) as server:
        reply = client(server).chat.completions.create(model="rapid", messages=user_message("Q1?", data_url()))
    rapid = reply.model_extra["rapid"]
    assert rapid["prediction"] == "2" and rapid["correct"] is None and rapid["verdict"] is None


def test_concurrent_requests_share_engine_calls_and_each_gets_its_own_answer():
    cap, rea = captioner(), reasoner()
    n = 16
    # stream=True in the served context (the CLI's --stream) must not stop plain requests from batching
    with running({"rapid": RapidContext(captioner=cap, reasoner=rea, stream=True)}) as server:

        async def ask_all():
            async with openai.AsyncOpenAI(base_url=server.base_url, api_key="-", max_retries=0) as aclient:
                return await asyncio.gather(
                    *(
                        aclient.chat.completions.create(model="rapid", messages=user_message(f"Q{i}?", data_url()))
                        for i in range(n)
                    )
                )

        replies = asyncio.run(ask_all())
    assert [r.choices[0].message.content for r in replies] == [
        f"For Q{i} there are two, so \\boxed{{2}}" for i in range(n)
    ]
    assert cap.num_requests == rea.num_requests == n
    # micro-batching: far fewer engine calls than requests (one each when all arrive within the debounce window)
    assert cap.num_calls <= n // 4 and rea.num_calls <= n // 4, (cap.num_calls, rea.num_calls)


def test_streaming_an_engine_that_cannot_stream_sends_the_answer_as_one_chunk():
    with running({"rapid": RapidContext(captioner=captioner(), reasoner=reasoner())}) as server:
        chunks = list(
            client(server).chat.completions.create(
                model="rapid",
                messages=user_message("Q3?", data_url()),
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"rapid": {"answer": "2"}},
            )
        )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["For Q3 there are two, so \\boxed{2}"]
    assert chunks[0].choices[0].delta.role == "assistant"
    last = [c for c in chunks if c.choices][-1]
    assert last.choices[0].finish_reason == "stop"
    assert (
        last.model_extra["rapid"]["correct"] is True and last.model_extra["rapid"]["caption"] == "Q3: two red circles"
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0  # the usage chunk comes last
    assert len({c.id for c in chunks}) == 1


def test_streaming_engine_streams_its_pieces_and_the_captioner_still_batches():
    cap = captioner()
    rea = StreamingEngine(lambda r: f"one two three for {tag_of(r)} \\boxed{{2}}")
    n = 6
    with running({"rapid": RapidContext(captioner=cap, reasoner=rea)}) as server:

        async def stream_all():
            async with openai.AsyncOpenAI(base_url=server.base_url, api_key="-", max_retries=0) as aclient:

                async def one(i):
                    stream = await aclient.chat.completions.create(
                        model="rapid", messages=user_message(f"Q{i}?", data_url()), stream=True
                    )
                    return [c async for c in stream]

                return await asyncio.gather(*(one(i) for i in range(n)))

        streams = asyncio.run(stream_all())
    for i, chunks in enumerate(streams):
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) == 6 and "".join(pieces) == f"one two three for Q{i} \\boxed{{2}}"
        assert all("circles" not in p for p in pieces)  # the captioner's text is not the answer
    assert len(rea.streamed) == n and rea.num_calls == 0  # every answer streamed, none through the batcher
    assert cap.num_requests == n and cap.num_calls <= 2  # perception still went out batched


def test_request_sampling_reaches_the_reasoner_and_max_tokens_is_capped():
    rea = RecordingEngine(lambda r: "\\boxed{1}")
    context = RapidContext(
        captioner=captioner(), reasoner=rea, reasoner_gen=GenerationConfig(temperature=0.6, max_new_tokens=100)
    )
    with running({"rapid": context}) as server:
        c = client(server)
        c.chat.completions.create(model="rapid", messages=user_message("Q?", data_url()))
        c.chat.completions.create(
            model="rapid", messages=user_message("Q?", data_url()), temperature=0.0, max_tokens=10, seed=7, top_p=0.5
        )
        c.chat.completions.create(model="rapid", messages=user_message("Q?", data_url()), max_completion_tokens=5000)
    assert rea.gens[0] == GenerationConfig(temperature=0.6, max_new_tokens=100)
    assert rea.gens[1] == GenerationConfig(temperature=0.0, top_p=0.5, max_new_tokens=10, seed=7)
    assert rea.gens[2].max_new_tokens == 100  # a client cannot make the server write more than configured


def test_several_images_in_one_message_all_reach_the_captioner():
    cap = captioner()
    with running({"rapid": RapidContext(captioner=cap, reasoner=reasoner())}) as server:
        urls = [data_url(png_bytes(color="red")), data_url(png_bytes((40, 30), "blue"))]
        client(server).chat.completions.create(model="rapid", messages=user_message("Q1?", *urls))
    (request,) = cap.calls[0]
    assert [im.size for im in request.images] == [(64, 64), (40, 30)]


def test_models_health_and_several_pipelines():
    text_reasoner = FunctionEngine(lambda r: "text only \\boxed{4}", spec="stand-in:text")
    pipelines = {
        "rapid": RapidContext(captioner=captioner(spec="c"), reasoner=reasoner(spec="r")),
        "blind": RapidContext(captioner=None, reasoner=text_reasoner, mode="none"),
        "eyes": RapidContext(captioner=FunctionEngine(lambda r: CAPTION, spec="c2"), reasoner=None, mode="cap"),
    }
    with running(pipelines) as server:
        c = client(server)
        models = {m.id: m.model_extra["rapid"] for m in c.models.list()}
        health = httpx.get(server.url + "/health").json()
        blind = c.chat.completions.create(model="blind", messages=[{"role": "user", "content": "What is 2+2?"}])
        eyes = c.chat.completions.create(model="eyes", messages=user_message("Describe it.", data_url()))
    assert models == {
        "rapid": {"captioner": "c", "reasoner": "r", "mode": "qcap+sol"},
        "blind": {"captioner": None, "reasoner": "stand-in:text", "mode": "none"},
        "eyes": {"captioner": "c2", "reasoner": None, "mode": "cap"},
    }
    assert health["status"] == "ok" and sorted(health["models"]) == ["blind", "eyes", "rapid"]
    assert blind.choices[0].message.content == "text only \\boxed{4}"  # mode none: no image needed
    assert eyes.choices[0].message.content == CAPTION  # a pipeline without a reasoner answers with the perception


def test_an_engine_failure_is_a_502_in_the_error_shape():
    def broken(request):
        raise RuntimeError("the GPU caught fire")

    with running({"rapid": RapidContext(captioner=captioner(), reasoner=FunctionEngine(broken))}) as server:
        with pytest.raises(openai.APIStatusError) as caught:
            client(server).chat.completions.create(model="rapid", messages=user_message("Q?", data_url()))
        with pytest.raises(openai.APIError, match="GPU caught fire"):
            list(
                client(server).chat.completions.create(
                    model="rapid", messages=user_message("Q?", data_url()), stream=True
                )
            )
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "engine_error" and "GPU caught fire" in caught.value.body["message"]


def test_metrics_count_requests_statuses_and_batch_sizes():
    with running({"rapid": RapidContext(captioner=captioner(spec="cap"), reasoner=reasoner(spec="rea"))}) as server:
        c = client(server)
        for _ in range(2):
            c.chat.completions.create(model="rapid", messages=user_message("Q?", data_url()))
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="nope", messages=user_message("Q?", data_url()))
        text = httpx.get(server.url + "/metrics").text
    assert 'rapid_requests_total{model="rapid",status="200"} 2.0' in text
    assert 'rapid_requests_total{model="-",status="404"} 1.0' in text
    assert 'rapid_engine_batch_size_count{engine="cap",role="captioner"} 2.0' in text
    assert 'rapid_request_duration_seconds_count{model="rapid"} 2.0' in text
    assert "rapid_queue_depth 0.0" in text and "rapid_requests_active 0.0" in text


def test_server_settings_are_checked():
    with pytest.raises(ValueError, match="max_active must be >= 1, got 0"):
        ServeConfig(max_active=0)
    with pytest.raises(ValueError, match="perception mode 'cap' needs a captioner"):
        from rapid_agent.serve import create_app

        create_app({"x": RapidContext(captioner=None, reasoner=reasoner(), mode="cap")})


def test_a_streamed_perception_failure_is_an_error_status_before_the_first_byte():
    def blind(request):
        raise RuntimeError("the camera is unplugged")

    rea = StreamingEngine(lambda r: "never \\boxed{1}")
    with running({"rapid": RapidContext(captioner=FunctionEngine(blind), reasoner=rea)}) as server:
        body = {"model": "rapid", "messages": user_message("Q?", data_url()), "stream": True}
        r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=30)
        with pytest.raises(openai.APIStatusError) as caught:
            client(server).chat.completions.create(model="rapid", messages=user_message("Q?", data_url()), stream=True)
        text = httpx.get(server.url + "/metrics").text
    assert r.status_code == 502 and r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert (
        error["code"] == "engine_error"
        and error["type"] == "server_error"
        and "camera is unplugged" in error["message"]
    )
    assert caught.value.status_code == 502
    assert rea.streamed == []  # the reasoner never ran
    assert 'rapid_requests_total{model="rapid",status="502"} 2.0' in text
    assert 'rapid_stream_errors_total{model="rapid"}' not in text  # no stream began, so none ended in an error


def test_a_streamed_answer_carries_the_same_rapid_result_as_a_plain_one():
    rea = StreamingEngine(lambda r: f"for {tag_of(r)} it is \\boxed{{2}}", spec="stand-in:rea")
    context = RapidContext(captioner=captioner(spec="stand-in:cap"), reasoner=rea)
    with running({"rapid": context}) as server:
        c = client(server)
        ask = {"model": "rapid", "messages": user_message("Q5?", data_url()), "extra_body": {"rapid": {"answer": "2"}}}
        plain = c.chat.completions.create(**ask)
        chunks = list(c.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    streamed = [ch for ch in chunks if ch.choices][-1].model_extra["rapid"]
    expected = plain.model_extra["rapid"]
    timing = {"captioner_latency_s", "reasoner_latency_s"}
    assert {k: v for k, v in streamed.items() if k != "metrics"} == {
        k: v for k, v in expected.items() if k != "metrics"
    }
    assert set(streamed["metrics"]) == set(expected["metrics"]) and timing <= set(expected["metrics"])
    assert {k: streamed["metrics"][k] for k in set(streamed["metrics"]) - timing} == {
        k: expected["metrics"][k] for k in set(expected["metrics"]) - timing
    }
    assert streamed["engines"] == {"captioner": "stand-in:cap", "reasoner": "stand-in:rea"}
    assert streamed["caption"] == "Q5: two red circles" and streamed["correct"] is True
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_a_pipeline_without_a_reasoner_streams_its_perception_as_one_piece():
    eyes = {"eyes": RapidContext(captioner=FunctionEngine(lambda r: CAPTION), reasoner=None, mode="cap")}
    with running(eyes) as server:
        chunks = list(
            client(server).chat.completions.create(
                model="eyes", messages=user_message("Describe it.", data_url()), stream=True
            )
        )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == [CAPTION]
    assert [c for c in chunks if c.choices][-1].model_extra["rapid"]["caption"] == "two red circles and a blue square"


def test_streamed_requests_are_counted_with_the_status_they_got():
    with running({"rapid": RapidContext(captioner=captioner(), reasoner=reasoner())}) as server:
        c = client(server)
        for _ in range(2):
            list(c.chat.completions.create(model="rapid", messages=user_message("Q?", data_url()), stream=True))
        c.chat.completions.create(model="rapid", messages=user_message("Q?", data_url()))
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="rapid", messages=[{"role": "user", "content": "no image"}], stream=True)
        text = httpx.get(server.url + "/metrics").text
    assert 'rapid_requests_total{model="rapid",status="200"} 3.0' in text
    assert 'rapid_requests_total{model="rapid",status="400"} 1.0' in text
    assert 'rapid_request_duration_seconds_count{model="rapid"} 3.0' in text


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("bug", [ValueError("invalid literal for int() with base 10: 'x'"), TypeError("'NoneType'")])
def test_a_value_or_type_error_inside_the_server_is_a_500_not_the_clients_fault(bug, stream, monkeypatch, caplog):
    from rapid_agent.serve.pipeline import Pipeline

    async def broken(self, sample, context):
        raise bug

    monkeypatch.setattr(Pipeline, "perceive" if stream else "answer", broken)
    caplog.set_level(logging.ERROR, logger="rapid_agent.serve")
    with running({"rapid": RapidContext(captioner=captioner(), reasoner=reasoner())}) as server:
        body = {"model": "rapid", "messages": user_message("Q?", data_url()), "stream": stream}
        r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=30)
        text = httpx.get(server.url + "/metrics").text
    assert r.status_code == 500, r.text
    assert r.json()["error"] == {
        "message": "internal server error; the server log has the details",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert 'rapid_requests_total{model="rapid",status="500"} 1.0' in text
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "rapid_agent.serve")
    assert f"{type(bug).__name__}: {bug}" in logged and "Traceback" in logged and "in broken" in logged
