"""The readers of OpenAI-compatible replies: what servers really send is read, anything else names its field."""

from __future__ import annotations

import pytest

from rapid_agent.backends.openai_wire import MalformedResponse, StreamReader, count, read_completion


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), (7.9, 7), ("12", 12), (" 3 ", 3), (None, 0), ("lots", 0), (-1, 0), (float("nan"), 0), (True, 0), ([], 0)],
)
def test_count_never_fails(value, expected):
    assert count(value) == expected


def test_read_completion_takes_the_first_choice_and_the_thinking():
    data = {
        "model": "qwen3",
        "choices": [
            {"message": {"content": "\\boxed{2}", "reasoning": "1+1=2"}, "finish_reason": "length"},
            {"message": {"content": "ignored"}},
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": "9"},
    }
    reply = read_completion(data)
    assert (reply.text, reply.reasoning, reply.finish_reason, reply.model) == (
        "\\boxed{2}",
        "1+1=2",
        "length",
        "qwen3",
    )
    assert (reply.prompt_tokens, reply.completion_tokens) == (5, 9)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"choices": [{"message": {"content": "x", "refusal": 3}}]}, "choices[0].message.refusal is int"),
        ({"choices": [{"message": {"content": ["ok", 4]}}]}, "choices[0].message.content[1] is int"),
        ({"choices": ["no"]}, "choices[0] is str"),
        (None, "response is null"),
    ],
)
def test_read_completion_names_the_bad_field(data, needle):
    with pytest.raises(MalformedResponse) as info:
        read_completion(data)
    assert needle in str(info.value)


def test_stream_reader_keeps_thinking_apart_and_takes_usage_from_the_last_chunk():
    reader = StreamReader()
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"reasoning_content": "think "}}]},
        {"choices": [{"delta": {"reasoning": "more"}}]},
        {"choices": [{"delta": {"content": [{"type": "text", "text": "an"}]}}]},
        {"choices": [{"delta": {"content": "swer"}, "finish_reason": None}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    ]
    assert [reader.feed(c) for c in chunks] == ["", "", "", "an", "swer", "", ""]
    reply = reader.result()
    assert (reply.text, reply.reasoning, reply.finish_reason) == ("answer", "think more", "stop")
    assert (reply.prompt_tokens, reply.completion_tokens, reader.saw_usage) == (3, 4, True)


def test_a_stream_without_finish_reason_was_cut_off():
    reader = StreamReader()
    reader.feed({"choices": [{"delta": {"content": "half an ans"}}]})
    with pytest.raises(MalformedResponse, match="1 chunk.*11 characters without a finish_reason"):
        reader.result()


def test_a_malformed_chunk_names_its_position():
    reader = StreamReader()
    reader.feed({"choices": [{"delta": {"content": "a"}}]})
    with pytest.raises(MalformedResponse, match="stream chunk 1: choices\\[0\\].delta is str"):
        reader.feed({"choices": [{"delta": "b"}]})
