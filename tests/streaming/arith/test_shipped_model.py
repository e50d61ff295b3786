"""The shipped embedded model, loaded as the server loads it, does the whole product's work.

The questions are synthesised here (espeak-ng), by voices and in phrasings held out of
training, and answered through the serving path: `load_responder` (default checkpoint, torch
engine, greedy), the reply's answer text and tool calls read from its events. It answers fresh
spoken questions, holds a five-question conversation, transcribes a question, calls a declared
`calculate` tool and speaks the result it gets back, and declines an off-task sentence.
"""

import json

import numpy as np
import pytest

from streaming.arith.context import TOOL_NAME
from streaming.arith.data import REJECTION, Problem, answer_number, number_words
from streaming.default_model import SHIPPED_CHECKPOINT
from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    ResponseRequest,
    ToolCalled,
    Turn,
)
from streaming.tool_calls import ToolCall
from tests.shipped_model import NEEDS_RETRAINED_MODEL
from tests.support.speech import speech_float32

pytestmark = pytest.mark.skipif(
    not (SHIPPED_CHECKPOINT / "config.json").is_file(),
    reason="the embedded model has not been trained and shipped yet",
)

# (problem, phrasing, voice): held-out voices (language en-us-nyc, variants m5 and f3) and
# a held-out phrasing ("how much is").
QUESTIONS = [
    (Problem(7, "*", 6), "what is {a} times {b}", "en-us-nyc"),
    (Problem(12, "-", 5), "how much is {a} minus {b}", "en-gb+m5"),
    (Problem(56, "/", 8), "divide {a} by {b}", "en-us+f3"),
]
CONVERSATION = [
    (Problem(3, "+", 4), "what is {a} plus {b}", "en-us+f3"),
    (Problem(9, "*", 8), "multiply {a} by {b}", "en-gb+m5"),
    (Problem(15, "-", 6), "what is {a} minus {b}", "en-us-nyc"),
    (Problem(36, "/", 4), "how much is {a} divided by {b}", "en-us+john"),
    (Problem(11, "+", 9), "add {a} and {b}", "en-gb+f3"),
]
CALCULATE = {  # as openai-agents declares a function tool (strict, pydantic's schema)
    "type": "function",
    "name": TOOL_NAME,
    "description": "Evaluate an arithmetic expression.",
    "parameters": {
        "properties": {"expression": {"title": "Expression", "type": "string"}},
        "required": ["expression"],
        "title": "calculate_args",
        "type": "object",
        "additionalProperties": False,
    },
}


def _speech(text: str, voice: str) -> np.ndarray:
    return speech_float32(text, voice, rate_wpm=170)


def _spoken(problem: Problem, phrasing: str, voice: str) -> np.ndarray:
    return _speech(phrasing.format(a=number_words(problem.a), b=number_words(problem.b)), voice)


@pytest.fixture(scope="module")
def responder():
    from streaming.pipeline import load_responder

    responder = load_responder(
        None, device="cpu", dtype="float32", max_sequences=4, max_seq_len=4096
    )
    yield responder


async def _reply(responder, turns: list[Turn], tools: list | None = None):
    request = ResponseRequest(turns=turns, speak=False, temperature=0.0, tools=tools or [])
    reasoning, answer, calls = "", "", []
    async for event in responder.respond(request):
        if isinstance(event, ReasoningDelta):
            reasoning += event.text
        elif isinstance(event, AnswerDelta):
            answer += event.text
        elif isinstance(event, ToolCalled):
            calls.append(event.call)
    return reasoning, answer.strip(), calls


@pytest.mark.parametrize(("problem", "phrasing", "voice"), QUESTIONS)
async def test_answers_fresh_spoken_questions(
    responder, problem: Problem, phrasing: str, voice: str
) -> None:
    reasoning, answer, _ = await _reply(
        responder, [Turn(role="user", audio=_spoken(problem, phrasing, voice))]
    )
    assert f"I hear: {problem.heard}." in reasoning
    assert answer_number(answer) == problem.result, (reasoning, answer)


async def test_holds_a_five_question_conversation(responder) -> None:
    turns: list[Turn] = []
    for problem, phrasing, voice in CONVERSATION:
        turns.append(Turn(role="user", audio=_spoken(problem, phrasing, voice)))
        reasoning, answer, _ = await _reply(responder, turns)
        assert answer_number(answer) == problem.result, (len(turns), reasoning, answer)
        turns.append(Turn(role="assistant", text=answer))


@NEEDS_RETRAINED_MODEL
async def test_transcribes_a_question(responder) -> None:
    text = "what is nine times seven"
    written = ""
    async for delta in responder.transcribe(_speech(text, "en-gb+m5")):
        written += delta.text
    assert written.strip() == text


@NEEDS_RETRAINED_MODEL
async def test_calls_the_tool_and_speaks_its_result(responder) -> None:
    question = Turn(
        role="user", audio=_spoken(Problem(7, "*", 6), "what is {a} times {b}", "en-gb+f3")
    )
    _, answer, calls = await _reply(responder, [question], tools=[CALCULATE])
    assert answer == ""  # a call is never spoken
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        (TOOL_NAME, {"expression": "7 * 6"})
    ]
    call = Turn(role="assistant", tool_calls=[ToolCall(TOOL_NAME, calls[0].arguments)])
    output = Turn(role="tool", text='{"result": 42}', name=TOOL_NAME)
    _, answer, calls = await _reply(responder, [question, call, output], tools=[CALCULATE])
    assert calls == [] and answer == "Seven times six is forty two."


@NEEDS_RETRAINED_MODEL
async def test_declines_an_off_task_sentence(responder) -> None:
    audio = _speech("what is the capital of france", "en-us-nyc")
    _, answer, _ = await _reply(responder, [Turn(role="user", audio=audio)])
    assert answer == REJECTION
