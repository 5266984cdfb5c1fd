"""The examples run and print what they promise."""

import runpy

import pytest


def test_swap_reasoners_example(capsys):
    runpy.run_path("examples/swap_reasoners.py", run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert "correct=True" in lines[0] and "correct=False" in lines[1] and "langchain:FakeListChatModel" in lines[2]


@pytest.mark.slow
def test_quickstart_example(capsys, monkeypatch, smollm2_gguf):
    monkeypatch.setattr("sys.argv", ["quickstart.py", "--samples", "2"])
    runpy.run_path("examples/quickstart.py", run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["none", "cap", "qcap", "sol", "cap+sol", "qcap+sol"]


def test_agent_example_calls_rapid_as_its_tool_and_remembers(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["agent.py"])
    runpy.run_path("examples/agent.py", run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("agent: The answer is 2.") and lines[1].endswith("agent: The answer is 3.")
    assert lines[2] == "the thread remembers 8 messages"
