import random

import pytest

from streaming.tool_calls import ToolCall, ToolCallError, ToolCallParser, canonical_arguments

CALL = '<tool_call>function\ncalculate\n{"expression": "7 * 6"}</tool_call>'


def parse(pieces: list[str]) -> tuple[str, str, list[ToolCall], list[int]]:
    """(speech, streamed argument text, calls, indices of the calls) of a split answer."""
    parser = ToolCallParser()
    speech, arguments, calls, indices = "", "", [], []
    for piece in pieces:
        out = parser.feed(piece)
        speech += out.speech
        arguments += "".join(delta for _, _, delta in out.argument_deltas)
        calls += [call for _, call in out.calls]
        indices += [index for index, _ in out.calls]
    speech += parser.finish().speech
    return speech, arguments, calls, indices


def splits(text: str, seed: int) -> list[list[str]]:
    """The text whole, one character at a time, and cut at random places."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), min(6, len(text) - 1)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return [[text], list(text), pieces]


@pytest.mark.parametrize(
    ("answer", "speech", "calls"),
    [
        ("Seven times six is forty two.", "Seven times six is forty two.", []),
        (CALL, "", [ToolCall("calculate", '{"expression": "7 * 6"}')]),
        (
            "Let me check. " + CALL,
            "Let me check. ",
            [ToolCall("calculate", '{"expression": "7 * 6"}')],
        ),
        (
            CALL + '<tool_call>function\nget_weather\n{"city": "Paris"}</tool_call>',
            "",
            [
                ToolCall("calculate", '{"expression": "7 * 6"}'),
                ToolCall("get_weather", '{"city": "Paris"}'),
            ],
        ),
        ("a < b and <tool is not a tag", "a < b and <tool is not a tag", []),
    ],
)
def test_calls_are_taken_out_of_the_speech_however_the_text_is_split(answer, speech, calls):
    for seed in range(3):
        for pieces in splits(answer, seed):
            got_speech, arguments, got_calls, indices = parse(pieces)
            assert got_speech == speech
            assert got_calls == calls
            assert indices == list(range(len(calls)))
            assert arguments.strip() == "".join(call.arguments for call in calls)


def test_arguments_stream_before_the_call_closes():
    parser = ToolCallParser()
    assert parser.feed("<tool_call>function\ncalc").argument_deltas == []
    out = parser.feed('ulate\n{"expression": ')
    assert out.argument_deltas == [(0, "calculate", '{"expression": ')]
    out = parser.feed('"1 + 2"}</tool')
    assert out.argument_deltas == [(0, "calculate", '"1 + 2"}')] and out.calls == []
    out = parser.feed("_call>")
    assert out.calls == [(0, ToolCall("calculate", '{"expression": "1 + 2"}'))]


@pytest.mark.parametrize(
    "answer",
    [
        "<tool_call>calculate\n{}</tool_call>",  # no type line
        "<tool_call>function\n\n{}</tool_call>",  # no name
        "<tool_call>function\ncalculate</tool_call>",  # no arguments line
        '<tool_call>function\ncalculate\n{"expression": "1',  # never closed
    ],
)
def test_malformed_calls_raise(answer):
    parser = ToolCallParser()
    with pytest.raises(ToolCallError):
        parser.feed(answer)
        parser.finish()


def test_arguments_are_written_as_json_dumps_writes_them():
    assert canonical_arguments('{"expression":"7*6","n":[1,2]}') == (
        '{"expression": "7*6", "n": [1, 2]}'
    )
    assert canonical_arguments("not json") == "not json"
    assert canonical_arguments('{"city":"Zürich"}') == '{"city": "Zürich"}'
