"""End to end through `langgraph dev`, LangGraph's own local server (what LangGraph Studio talks to), on
`langgraph.json` with its default refusal of blocking calls on the event loop: a first run that loads hf engines
(the import and the weights, which used to fail every run with a BlockingError), and an assistant whose JSON context
points both engines at a local OpenAI-style server: two runs on one thread, the thread's history, streamed updates.

The server runs as `langgraph dev --no-browser --port N` plus `--no-reload`: other work on the checkout would
otherwise restart it mid-test. Reloading has no bearing on how runs are served (the detector is on either way)."""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_sync_client
from PIL import Image

from tests.http_server import FakeChatServer, SeenRequest, chat_reply

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("langgraph_api") is None,
    reason="`langgraph dev` needs langgraph-api: pip install 'langgraph-cli[inmem]' (in the dev extra)",
)

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer(seen: SeenRequest):
    """A captioner that names the colour of the image it is shown, a reasoner that answers from the description."""
    if seen.image_urls:
        raw = base64.b64decode(seen.image_urls[0].partition(",")[2])
        colour = {(255, 0, 0): "red", (0, 0, 255): "blue"}[Image.open(io.BytesIO(raw)).convert("RGB").getpixel((0, 0))]
        return chat_reply(f"<caption>a {colour} square</caption><solution>\\boxed{{{colour}}}</solution>")
    description = seen.prompt.split("Description:\n")[1].split("\n")[0]
    return chat_reply(f"It is {description}. \\boxed{{{description.split()[1]}}}")


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    """One `langgraph dev` for this module, started in the repository root as a developer starts it."""
    tmp_path = tmp_path_factory.mktemp("langgraph_dev")
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("LANGGRAPH_ALLOW_BLOCKING", None)
    command = [sys.executable, "-m", "langgraph_cli", "dev", "--no-browser", "--no-reload", "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert server.poll() is None, f"langgraph dev exited:\n{(tmp_path / 'server.log').read_text()[-4000:]}"
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"langgraph dev did not start in {STARTUP_S} s"
            time.sleep(0.25)
        yield url, tmp_path / "server.log"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_langgraph_dev_loads_hf_engines_on_first_use(dev_server, tiny_captioner_dir, tiny_reasoner_dir, tmp_path):
    # the reported failure: the first run to use an hf engine imports the backend (torch, transformers) and loads
    # the weights; on the server's loop that was a BlockingError, which failed every run
    url, server_log = dev_server
    Image.new("RGB", (56, 56), "white").save(tmp_path / "blank.png")
    client = get_sync_client(url=url, timeout=120)
    short = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8}
    assistant = client.assistants.create(
        graph_id="rapid",
        context={
            "captioner": f"hf:{tiny_captioner_dir}",
            "reasoner": f"hf:{tiny_reasoner_dir}",
            "mode": "cap",
            "captioner_gen": short,
            "reasoner_gen": short,
        },
    )
    thread = client.threads.create()
    sample = {"image": str(tmp_path / "blank.png"), "question": "How many dots?", "answer": "0"}
    try:
        out = client.runs.wait(thread["thread_id"], assistant["assistant_id"], input=sample)
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- server log ---\n{server_log.read_text()[-6000:]}") from exc
    assert out["errors"] == [] and out["engines"]["captioner"] == f"hf:{tiny_captioner_dir}"
    assert 0 < out["metrics"]["reasoner_completion_tokens"] <= 8
    assert "BlockingError" not in server_log.read_text()


def test_langgraph_dev_serves_two_turns_on_a_thread(dev_server, tmp_path):
    url, server_log = dev_server
    logged_before = len(server_log.read_text())
    for name, colour in (("first.png", "red"), ("second.png", "blue")):
        Image.new("RGB", (40, 40), colour).save(tmp_path / name)
    client = get_sync_client(url=url, timeout=60)
    with FakeChatServer(answer) as engines:
        assistant = client.assistants.create(
            graph_id="rapid",
            context={  # JSON only, as Studio sends it
                "captioner": f"openai:vl@{engines.base_url}",
                "reasoner": f"openai:llm@{engines.base_url}",
                "mode": "cap",
                "reasoner_gen": {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 32},
            },
        )
        thread = client.threads.create()
        tid, aid = thread["thread_id"], assistant["assistant_id"]
        schemas = client.assistants.get_schemas(aid)  # what Studio draws its input form from
        assert {"image", "images", "question", "answer"} <= set(schemas["input_schema"]["properties"])
        try:
            first = client.runs.wait(
                tid,
                aid,
                input={"image": str(tmp_path / "first.png"), "question": "Which colour first?", "answer": "red"},
            )
            updates = [
                part
                for part in client.runs.stream(
                    tid,
                    aid,
                    input={"images": [str(tmp_path / "second.png")], "question": "Which colour now?"},
                    stream_mode="updates",
                )
                if part.event == "updates"
            ]
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- server log ---\n{server_log.read_text()[-6000:]}") from exc
        history = client.threads.get_history(tid, limit=50)
    assert first["correct"] is True and first["caption"] == "a red square" and first["errors"] == []
    assert [next(iter(u.data)) for u in updates] == ["perceive", "reason", "score"]
    state = client.threads.get_state(tid)["values"]
    # the second run is a sample of its own: its image, no gold answer, nothing of the first left over
    assert state["caption"] == "a blue square" and state["prediction"] == "blue" and state["errors"] == []
    assert "image" not in state and "correct" not in state and state["answer"] is None
    finished = [h["values"]["caption"] for h in history if not h["next"] and h["values"]]
    assert finished == ["a blue square", "a red square"]  # newest first: both turns kept
    assert "BlockingError" not in server_log.read_text()[logged_before:]
