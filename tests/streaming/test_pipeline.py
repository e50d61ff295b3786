"""The reply pipeline (`ModelResponder`): scheduler, real espeak-ng speech, and the server around
it over a real socket on 127.0.0.1. The model is the tiny checkpoint overfitted to fixed replies
(overfit_model.py), so that the reasoning closes and the answer is known."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import websockets
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.settings import Settings
from streaming.engine.base import Prompt, SamplingParams
from streaming.engine.factory import AudioSide
from streaming.engine.torch_engine import TorchEngine
from streaming.model.audio_encoder import audio_token_count
from streaming.model.checkpoint import LoadedModel, load_checkpoint
from streaming.model.frontend import mel_frame_count
from streaming.model.prompt import Message, PromptBuilder
from streaming.pipeline import ModelResponder, ResponderSettings
from streaming.reasoning import ReplyParser
from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    ResponseFinished,
    ResponseRefused,
    ResponseRequest,
    SpeechChunk,
    Truncation,
    Turn,
)
from streaming.scheduler import MODES, ScheduleSettings
from tests.streaming.overfit_model import (
    CALCULATE,
    REPLIES,
    TOOL_REPLY,
    conversation_ids,
    overfit,
)
from tests.support.serving import recv_until, running
from tests.support.speech import appends, spoken
from tts import get_backend
from tts.base import AudioChunk, SpeechStream, TTSBackend

LONG = REPLIES[0]
MAX_TOKENS = 64
SCHEDULE = ScheduleSettings(reasoning_segment=8, answer_segment=4)
RESPONDER_STAGES = {
    "encode",
    "prefill",
    "first_reasoning_token",
    "first_answer_token",
    "first_tts_chunk",
}


class RecordingTTS(TTSBackend):
    """Real espeak-ng speech; it also records every piece of text it was asked to speak."""

    def __init__(self) -> None:
        self.backend = get_backend("espeak")
        self.fed: list[str] = []

    def voices(self) -> list[str]:
        return self.backend.voices()

    def open_stream(self, voice: str, rate: float = 1.0) -> SpeechStream:
        return _RecordingStream(self.backend.open_stream(voice, rate), self.fed)

    async def close(self) -> None:
        await self.backend.close()


class _RecordingStream(SpeechStream):
    def __init__(self, stream: SpeechStream, fed: list[str]) -> None:
        self.stream, self.fed = stream, fed

    def feed(self, text: str) -> None:
        self.fed.append(text)
        self.stream.feed(text)

    def flush(self) -> None:
        self.stream.flush()

    async def cancel(self) -> None:
        await self.stream.cancel()

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self.stream.__aiter__()


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path) -> LoadedModel:
    return overfit(tiny_checkpoint)


@pytest.fixture
async def responder(loaded: LoadedModel) -> AsyncIterator[ModelResponder]:
    engine = TorchEngine(loaded.model.model, loaded.model.lm_head, max_slots=8, max_seq_len=512)
    settings = ResponderSettings(max_output_tokens=MAX_TOKENS, schedule=SCHEDULE)
    responder = ModelResponder(AudioSide.of(loaded), engine, RecordingTTS(), settings)
    yield responder
    await responder.close()


def _request(effort: str) -> ResponseRequest:
    return ResponseRequest(turns=[Turn("user", text=LONG.question)], reasoning_effort=effort)


async def _collect(responder: ModelResponder, request: ResponseRequest) -> dict[str, list]:
    events: dict[str, list] = {"reasoning": [], "answer": [], "speech": [], "done": []}
    async for event in responder.respond(request):
        if isinstance(event, ReasoningDelta):
            events["reasoning"].append(event.text)
        elif isinstance(event, AnswerDelta):
            events["answer"].append(event.text)
        elif isinstance(event, SpeechChunk):
            events["speech"].append(event.chunk)
        else:
            assert isinstance(event, ResponseFinished)
            events["done"].append(event)
    return events


async def _single_sequence_answer(loaded: LoadedModel, engine: TorchEngine) -> str:
    builder = PromptBuilder(loaded.tokenizer, loaded.special)
    prompt = builder.build([], add_generation_prompt=False)
    prompt.token_ids = conversation_ids(builder, LONG) + builder.assistant_prefix()
    params = SamplingParams(max_tokens=MAX_TOKENS, stop_ids=loaded.special.stop_ids)
    parser = ReplyParser(loaded.tokenizer, stop_ids=loaded.special.stop_ids)
    async for token in await engine.submit(prompt, params):
        parser.push(token)
    parser.finish()
    return parser.answer


async def test_think_then_speak_speaks_the_single_sequence_answer(loaded, responder) -> None:
    reference = await _single_sequence_answer(loaded, responder.engine)
    events = await _collect(responder, _request("xhigh"))
    spoken_text = "".join(responder.tts.fed)
    assert spoken_text == reference == LONG.answer
    assert "".join(events["reasoning"]) == LONG.reasoning
    assert sum(len(chunk.pcm) for chunk in events["speech"]) > 0
    [done] = events["done"]
    assert done.mode == "think_then_speak" and done.status == "completed"
    assert done.reasoning_tokens > 0 and done.answer_tokens > 0
    assert RESPONDER_STAGES <= set(done.stage_seconds)


@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "high", "xhigh"])
async def test_reasoning_never_reaches_speech(responder, effort) -> None:
    events = await _collect(responder, _request(effort))
    spoken_text = "".join(responder.tts.fed)
    assert spoken_text == "".join(events["answer"])  # what is spoken is the answer, all of it
    reasoning = "".join(events["reasoning"])
    assert LONG.reasoning.startswith(reasoning)
    for marker in ("I hear", "arithmetic", "7 * 6", "<think>", "</think>"):  # reasoning only
        assert marker not in spoken_text
    [done] = events["done"]
    assert done.mode in MODES
    assert (done.reasoning_tokens == 0) == (effort == "minimal")


# --- through the server -----------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_history_keeps_the_answer_only(responder) -> None:
    app = create_app(responder, Settings(reasoning_effort="medium"))
    async with running(app) as address, websockets.connect(f"ws://{address}/v1/realtime") as ws:
        await recv_until(ws, "session.created")
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "audio": {"input": {"turn_detection": None}},
                        "include": ["response.reasoning_text"],
                    },
                }
            )
        )
        await recv_until(ws, "session.updated")
        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": LONG.question}],
                    },
                }
            )
        )
        await ws.send(json.dumps({"type": "response.create"}))
        events = await recv_until(ws, "response.done")
        reasoning = "".join(
            e["delta"] for e in events if e["type"] == "response.reasoning_text.delta"
        )
        transcript = "".join(
            e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
        )
        assert reasoning and LONG.reasoning.startswith(reasoning)
        assert transcript == "".join(responder.tts.fed)
        item = events[-1]["response"]["output"][0]
        await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": item["id"]}))
        [retrieved] = [
            e
            for e in await recv_until(ws, "conversation.item.retrieved")
            if e["type"] == "conversation.item.retrieved"
        ]
        history = retrieved["item"]["content"][0]["transcript"]
        assert history == transcript and "I hear" not in history  # the answer, no reasoning
        async with httpx.AsyncClient() as http:
            samples = _samples((await http.get(f"http://{address}/metrics")).text)
    # the server's stages and the responder's, labelled by the mode that ran
    assert (
        samples[("realtime_stage_seconds_count", (("mode", "think_first"), ("stage", "server")))]
        == 1
    )
    for stage in RESPONDER_STAGES:
        assert (
            samples[("realtime_stage_seconds_count", (("mode", "think_first"), ("stage", stage)))]
            == 1
        )


async def test_resumed_speech_discards_the_speculative_reply_without_a_trace(responder) -> None:
    settings = Settings(speculative_start_ms=100, reasoning_effort="low")
    word = spoken("seven", lead_ms=300, tail_ms=0)
    pause = np.zeros(24_000 * 450 // 1000, np.int16)  # long enough to guess, too short to end
    rest = spoken("times six", lead_ms=0, tail_ms=1500)
    async with (
        running(create_app(responder, settings)) as address,
        websockets.connect(f"ws://{address}/v1/realtime") as ws,
    ):
        await recv_until(ws, "session.created")
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "audio": {
                            "input": {
                                "turn_detection": {
                                    "type": "server_vad",
                                    "silence_duration_ms": SILENCE_MS,
                                }
                            }
                        },
                    },
                }
            )
        )
        await recv_until(ws, "session.updated")
        for message in appends(np.concatenate([word, pause])):
            await ws.send(message)
        await asyncio.sleep(SPECULATION_RUN_S)  # let the guess decode for a while
        for message in appends(rest):
            await ws.send(message)
        events = await recv_until(ws, "response.done")
        async with httpx.AsyncClient() as http:
            samples = _samples((await http.get(f"http://{address}/metrics")).text)
    created = [e for e in events if e["type"] == "response.created"]
    assert len(created) == 1
    response_id = created[0]["response"]["id"]
    assert {e["response_id"] for e in events if "response_id" in e} == {response_id}
    assert samples[("realtime_speculative_starts_total", ())] >= 2
    assert samples[("realtime_speculations_total", (("outcome", "discarded"),))] >= 1
    assert samples[("realtime_speculation_wasted_tokens_total", ())] > 0
    assert (
        samples[("realtime_responses_total", (("status", "completed"),))]
        + samples.get(("realtime_responses_total", (("status", "incomplete"),)), 0)
        == 1
    )
    assert (
        samples[("realtime_stage_seconds_count", (("mode", "speak_first"), ("stage", "prefill")))]
        == 1
    )


SILENCE_MS = 900  # the turn ends after this much silence; the pause above is shorter
SPECULATION_RUN_S = 1.5  # generous on a shared machine; the guess only has to decode a token


# --- listening ahead ----------------------------------------------------------------------------

LONG_TURN_TEXT = (  # about 30 s of espeak-ng speech, with no pause near the silence window
    "Please listen carefully, because this question is a long one. I went to the market this "
    "morning and bought seven boxes of apples, and every box held six apples, and then my "
    "neighbour gave me twelve more apples from her garden, and on the way home I ate two of "
    "them, and my brother took nine of them for his school friends, so I would like to know, "
    "after all of that, how many apples I still have in my kitchen at home tonight, and "
    "whether that is enough to bake three pies that need eight apples each."
)
LONG_TURN_SILENCE_MS = 2000  # longer than any pause inside the question
CHUNK_S = 25  # the encoder's chunk (streaming.model.frontend.CHUNK_SECONDS)


async def test_finished_chunks_of_a_long_turn_are_encoded_while_it_is_spoken(responder) -> None:
    speech = spoken(LONG_TURN_TEXT, lead_ms=300, tail_ms=0)
    assert len(speech) > (CHUNK_S + 1) * 24_000, "the question must outlast one chunk"
    settings = Settings(speculative_start_ms=0, reasoning_effort="minimal")  # no speculation
    async with (
        running(create_app(responder, settings)) as address,
        websockets.connect(f"ws://{address}/v1/realtime") as ws,
    ):
        await recv_until(ws, "session.created")
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "audio": {
                            "input": {
                                "turn_detection": {
                                    "type": "server_vad",
                                    "silence_duration_ms": LONG_TURN_SILENCE_MS,
                                }
                            }
                        },
                    },
                }
            )
        )
        await recv_until(ws, "session.updated")
        for message in appends(speech):
            await ws.send(message)
        async with asyncio.timeout(30):  # the first 25 s are encoded before the turn ends
            while responder.encoded_chunks < 1:  # noqa: ASYNC110 - a counter, no event to wait on
                await asyncio.sleep(0.05)
        silence = np.zeros(24_000 * (LONG_TURN_SILENCE_MS + 500) // 1000, np.int16)
        for message in appends(silence):
            await ws.send(message)
        events = await recv_until(ws, "response.done")
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    assert len(committed) == 1
    # at the end of the turn only its last chunk was left to encode
    assert responder.encoded_chunks == 2
    # and the first chunk was prefilled while it was spoken, once: the response forked it
    input_tokens = events[-1]["response"]["usage"]["input_tokens"]
    no_think_prefix = len(responder.builder.assistant_prefix(""))
    assert responder.engine.prefilled_tokens == input_tokens + no_think_prefix


# --- prefill while listening --------------------------------------------------------------------

MODEL_RATE = 16_000  # the encoder's input rate
TURN_S = 60  # two finished 25 s chunks, then 10 s
PREPARE_EVERY_S = 25  # as the server's PrepareResponse (PREPARE_EVERY_MS)
LISTENING_TOKENS = 8  # what is decoded after the long turn; enough to compare outputs


@pytest.fixture(scope="module")
def plain_loaded(tiny_checkpoint: Path) -> LoadedModel:
    """The tiny checkpoint's random weights: the output only has to be the same both ways."""
    return load_checkpoint(tiny_checkpoint, dtype=torch.float32, device="cpu")


@pytest.fixture
async def long_turn_responder(plain_loaded: LoadedModel) -> AsyncIterator[ModelResponder]:
    engine = TorchEngine(
        plain_loaded.model.model, plain_loaded.model.lm_head, max_slots=4, max_seq_len=1024
    )
    settings = ResponderSettings(max_output_tokens=LISTENING_TOKENS)
    responder = ModelResponder(AudioSide.of(plain_loaded), engine, get_backend("espeak"), settings)
    yield responder
    await responder.close()


def _long_turn_request(
    audio: np.ndarray, item_id: str, instructions: str | None = None
) -> ResponseRequest:
    turns = [
        Turn("user", text="Hello."),
        Turn("assistant", text="Hi, go on."),
        Turn("user", audio=audio, item_id=item_id),
    ]
    return ResponseRequest(
        turns=turns, instructions=instructions, speak=False, reasoning_effort="minimal"
    )


async def _answer_and_prefill(
    responder: ModelResponder, request: ResponseRequest
) -> tuple[str, int]:
    """The answer text, and the positions prefilled from the start of the response."""
    engine = responder.engine
    assert isinstance(engine, TorchEngine)
    before = engine.prefilled_tokens
    events = await _collect(responder, request)
    [done] = events["done"]
    assert done.answer_tokens == LISTENING_TOKENS
    return "".join(events["answer"]), engine.prefilled_tokens - before


async def _listen(
    responder: ModelResponder, audio: np.ndarray, item_id: str, instructions: str | None = None
) -> int:
    """Prepare as the server does every 25 s of the turn; the positions prefilled meanwhile."""
    engine = responder.engine
    assert isinstance(engine, TorchEngine)
    before = engine.prefilled_tokens
    for seconds in range(PREPARE_EVERY_S, TURN_S, PREPARE_EVERY_S):
        heard = audio[: seconds * MODEL_RATE + MODEL_RATE // 10]  # a little after the mark
        await responder.prepare(_long_turn_request(heard, item_id, instructions))
    # the listening sequences' one token each is never fed, so nothing else was decoded
    return engine.prefilled_tokens - before


def _turn_audio(seed: int = 3) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(TURN_S * MODEL_RATE) * 0.1).astype(
        np.float32
    )


async def test_a_long_turn_is_prefilled_while_it_is_spoken(long_turn_responder) -> None:
    responder, audio = long_turn_responder, _turn_audio()
    unprepared, full_prefill = await _answer_and_prefill(
        responder, _long_turn_request(audio, "item_unprepared")
    )
    listened = await _listen(responder, audio, "item_prepared")
    prepared, left_prefill = await _answer_and_prefill(
        responder, _long_turn_request(audio, "item_prepared")
    )
    assert prepared == unprepared  # greedy: the same reply, prefilled ahead or not
    # left at the end: the last (10 s) chunk's span, `<|EOT|>` and the generation prompt
    builder = responder.builder
    last_chunk = audio_token_count(mel_frame_count((TURN_S - 2 * CHUNK_S) * MODEL_RATE))
    tail = 1 + len(builder.assistant_prefix(""))
    assert left_prefill == (1 + last_chunk + 1) + tail
    assert listened + left_prefill == full_prefill  # every position prefilled once
    print(
        f"\nprefilled at the end of a {TURN_S} s turn: {full_prefill} positions without "
        f"prepare, {left_prefill} with ({listened} while listening)"
    )


async def test_a_listening_sequence_that_does_not_match_is_not_forked(long_turn_responder) -> None:
    responder, audio = long_turn_responder, _turn_audio(seed=4)
    request = _long_turn_request(audio, "item_other", instructions="Answer briefly.")
    await _listen(responder, audio, "item_other")  # heard without the instructions
    _, prefill = await _answer_and_prefill(responder, request)
    builder = responder.builder
    conversation = builder.build(
        await responder.prompts.messages(request), add_generation_prompt=False
    )
    # a different start: the whole prompt was prefilled (no_think's empty reasoning block)
    assert prefill == len(conversation) + len(builder.assistant_prefix(""))


async def test_a_listening_sequence_whose_slot_was_reused_is_prefilled_again(
    long_turn_responder,
) -> None:
    responder, audio = long_turn_responder, _turn_audio(seed=5)
    engine = responder.engine
    assert isinstance(engine, TorchEngine)
    unprepared, full_prefill = await _answer_and_prefill(
        responder, _long_turn_request(audio, "item_unprepared")
    )
    await _listen(responder, audio, "item_reused")
    others = [
        await engine.submit(Prompt([20 + i] * 4), SamplingParams(max_tokens=2))
        for i in range(engine.max_slots)
    ]  # every slot at once: the listening ones too
    for stream in others:
        async for _ in stream:
            pass
    prepared, prefill = await _answer_and_prefill(
        responder, _long_turn_request(audio, "item_reused")
    )
    assert (prepared, prefill) == (unprepared, full_prefill)


async def _send(ws, event: dict) -> None:  # noqa: ANN001
    await ws.send(json.dumps(event))


async def test_a_tool_call_goes_out_as_a_function_call_and_is_never_spoken(responder) -> None:
    app = create_app(responder, Settings(reasoning_effort="xhigh"))
    async with running(app) as address, websockets.connect(f"ws://{address}/v1/realtime") as ws:
        await recv_until(ws, "session.created")
        session = {
            "audio": {"input": {"turn_detection": None}},
            "tools": [CALCULATE],
            "max_output_tokens": 200,  # the reasoning and the call, whole
        }
        await _send(ws, {"type": "session.update", "session": session})
        await recv_until(ws, "session.updated")
        text = {"type": "input_text", "text": TOOL_REPLY.question}
        item = {"type": "message", "role": "user", "content": [text]}
        await _send(ws, {"type": "conversation.item.create", "item": item})
        await _send(ws, {"type": "response.create"})
        events = await recv_until(ws, "response.done")
        done = events[-1]["response"]
        assert done["status"] == "completed"
        message, call = done["output"]
        assert (
            message["type"] == "message" and message["content"][0]["transcript"] == "Let me check."
        )
        assert call["type"] == "function_call" and call["name"] == "calculate"
        assert json.loads(call["arguments"]) == {"expression": "9 * 9"}
        arguments = "".join(
            e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
        )
        assert json.loads(arguments) == {"expression": "9 * 9"}
        assert "".join(responder.tts.fed) == "Let me check."  # the call itself is never spoken
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "81"}
        await _send(ws, {"type": "conversation.item.create", "item": output})
        await _send(ws, {"type": "response.create"})
        events = await recv_until(ws, "response.done")
        assert events[-1]["response"]["status"] in ("completed", "incomplete")


def _history(exchanges: int) -> list[Turn]:
    turns = []
    for n in range(exchanges):
        turns += [Turn("user", text=f"question {n}"), Turn("assistant", text=f"answer {n}")]
    return [*turns, Turn("user", text=LONG.question)]


async def test_the_oldest_exchanges_leave_a_full_context(loaded, responder) -> None:
    builder = PromptBuilder(loaded.tokenizer, loaded.special)
    engine_room = responder.engine.max_seq_len - MAX_TOKENS  # 512 positions, 64 for the reply
    turns = _history(40)  # far more than fits
    request = ResponseRequest(turns=turns, reasoning_effort="minimal", speak=False)
    events = await _collect(responder, request)
    used = events["done"][0].input_tokens
    assert used <= engine_room
    kept = used - len(builder.build([Message("user", LONG.question)], add_generation_prompt=False))
    assert kept > 0  # some history stayed: only what did not fit left
    # the live question is always there, and the newest history before the oldest
    prompt = await responder._conversation(request)
    text = loaded.tokenizer.decode(prompt.token_ids)
    assert (
        text.endswith(f"{LONG.question}<|EOT|>") and "answer 39" in text and "answer 0<" not in text
    )


async def test_truncation_disabled_refuses_a_conversation_that_does_not_fit(responder) -> None:
    request = ResponseRequest(turns=_history(40), truncation=Truncation("disabled"))
    with pytest.raises(ResponseRefused, match="truncation is disabled") as refused:
        await _collect(responder, request)
    assert refused.value.code == "context_length_exceeded"
    huge = ResponseRequest(turns=_history(0), instructions="word " * 2000)
    with pytest.raises(ResponseRefused, match="shorten them"):
        await _collect(responder, huge)


async def test_a_retention_ratio_drops_further_than_needed(responder) -> None:
    auto = ResponseRequest(turns=_history(40), reasoning_effort="minimal", speak=False)
    kept_auto = (await responder._conversation(auto)).token_ids
    ratio = ResponseRequest(
        turns=_history(40),
        reasoning_effort="minimal",
        speak=False,
        truncation=Truncation("retention_ratio", 0.5),
    )
    kept_half = (await responder._conversation(ratio)).token_ids
    assert len(kept_half) < len(kept_auto) * 0.75


async def test_a_checkpoints_history_rule_is_honoured(loaded, responder, monkeypatch) -> None:
    monkeypatch.setitem(loaded.config.raw, "max_history_turns", 3)
    request = ResponseRequest(turns=_history(10), reasoning_effort="minimal", speak=False)
    text = loaded.tokenizer.decode((await responder._conversation(request)).token_ids)
    assert [f"question {n}" in text for n in range(10)] == [False] * 7 + [True] * 3


async def test_a_call_cut_by_max_output_tokens_is_incomplete_not_an_error(responder) -> None:
    request = ResponseRequest(
        turns=[Turn("user", text=TOOL_REPLY.question)],
        reasoning_effort="xhigh",
        tools=[CALCULATE],
        max_output_tokens=40,
        speak=False,
    )
    events = await _collect(responder, request)
    assert events["done"][0].status == "incomplete"
