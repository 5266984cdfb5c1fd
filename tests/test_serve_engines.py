"""The server with real engines: tiny real Qwen models (the hf engine streams for real), the `openai:` engine using
this server as a real OpenAI-compatible server, and `python -m rapid_agent serve` as a process."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from rapid_agent import RapidContext
from rapid_agent.api import solve_batch
from rapid_agent.backends import GenerationConfig, load_engine
from rapid_agent.backends.batching import get_batcher
from rapid_agent.backends.stand_in import FunctionEngine
from tests.serve_helpers import data_url, png_bytes, running, tag_of, user_message

GREEDY = GenerationConfig(temperature=0.0, max_new_tokens=8)


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_captioner_dir, tiny_reasoner_dir):
    captioner = load_engine(f"hf:{tiny_captioner_dir}", "captioner")
    reasoner = load_engine(f"hf:{tiny_reasoner_dir}", "reasoner")
    return RapidContext(captioner=captioner, reasoner=reasoner, captioner_gen=GREEDY, reasoner_gen=GREEDY)


def test_tiny_real_models_answer_plain_and_streamed_with_the_same_text(tiny_pipeline):
    messages = user_message("How many circles?", data_url(png_bytes((56, 56))))
    with running({"tiny": tiny_pipeline}) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=120)
        plain = client.chat.completions.create(model="tiny", messages=messages, extra_body={"rapid": {"answer": "2"}})
        chunks = list(client.chat.completions.create(model="tiny", messages=messages, stream=True))
        streamed = server.app.state.serve.metrics.streamed.labels("tiny")._value.get()
    content = plain.choices[0].message.content
    rapid = plain.model_extra["rapid"]
    assert rapid["captioner_output"] is not None and rapid["correct"] in (True, False)
    assert plain.usage.completion_tokens > 0 and plain.choices[0].finish_reason in ("stop", "length")
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == content  # greedy: the streamed answer is the plain one, piece by piece
    assert len(pieces) > 1  # the hf engine streams: several pieces, not one at the end
    assert streamed == 1  # the hf engine streamed for real (not one piece from a batch)


def test_concurrent_requests_batch_into_the_real_engines(tiny_pipeline):
    import asyncio

    batchers = [get_batcher(tiny_pipeline.captioner), get_batcher(tiny_pipeline.reasoner)]
    before = [b.num_calls for b in batchers]
    n = 6
    with running({"tiny": tiny_pipeline}) as server:

        async def ask():
            async with openai.AsyncOpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=120) as c:
                return await asyncio.gather(
                    *(
                        c.chat.completions.create(model="tiny", messages=user_message(f"Q{i}?", data_url()))
                        for i in range(n)
                    )
                )

        replies = asyncio.run(ask())
    assert len(replies) == n and all(r.choices[0].message.content is not None for r in replies)
    calls = [b.num_calls - s for b, s in zip(batchers, before)]
    assert all(1 <= c < n for c in calls), calls


def test_openai_engine_uses_this_server_as_a_real_server():
    """A graph whose reasoner is `openai:<pipeline>@<this server>`: the request goes over HTTP, through the served
    pipeline's own reasoner, and its answer comes back as the client graph's reasoner output."""
    served = FunctionEngine(lambda r: f"remote says {tag_of(r)} is \\boxed{{5}}", spec="stand-in:served")
    with running({"text": RapidContext(captioner=None, reasoner=served, mode="none")}) as server:
        remote = load_engine(f"openai:text@{server.base_url}", "reasoner", cache=False)
        captioner = FunctionEngine(lambda r: "<caption>five dots</caption><solution>5</solution>")
        context = RapidContext(captioner=captioner, reasoner=remote, reasoner_gen=GenerationConfig(max_new_tokens=64))
        results = solve_batch(
            [{"image": png_bytes(), "question": f"Q{i}: how many dots?", "answer": "5"} for i in range(4)],
            context=context,
        )
    assert [r["reasoner_output"] for r in results] == [f"remote says Q{i} is \\boxed{{5}}" for i in range(4)]
    assert all(r["correct"] is True for r in results)
    assert served.num_requests == 4
    # the client's whole reasoner prompt (with the caption) arrived as the served pipeline's question
    assert all("five dots" in request.prompt for call in served.calls for request in call)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_command_answers_the_openai_client_and_stops_on_sigterm(tiny_captioner_dir, tiny_reasoner_dir, tmp_path):
    port = _free_port()
    keys = tmp_path / "keys.txt"
    keys.write_text("sk-test-serve-key\n")
    command = [sys.executable, "-m", "rapid_agent", "serve", "--captioner", f"hf:{tiny_captioner_dir}"]
    command += ["--reasoner", f"hf:{tiny_reasoner_dir}", "--captioner-max-new-tokens", "8"]
    command += ["--reasoner-max-new-tokens", "8", "--port", str(port), "--api-key-file", str(keys)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test-serve-key", max_retries=0)
        reply = client.chat.completions.create(model="rapid", messages=user_message("How many?", data_url()))
        chunks = list(
            client.chat.completions.create(model="rapid", messages=user_message("Q?", data_url()), stream=True)
        )
        assert reply.choices[0].message.content is not None and chunks[-1].choices[0].finish_reason
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "serving on http://127.0.0.1" in stderr and "1 API key(s)" in stderr
    assert "sk-test-serve-key" not in stderr
