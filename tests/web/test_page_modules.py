"""The page's JavaScript modules, run in headless Chromium: the resampler against soxr, the
jitter buffer, the latency split, the session settings, the plain-words messages, and GPT-Live's
translation and the controls it disables. The page is served by `web.mount_page` alone (no
model), as the realtime server serves it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import soxr
import uvicorn
from fastapi import FastAPI

from benchmarks.server_process import free_port
from server.web import mount_page, page_config
from tests.web.browser import browser_page, open_page
from tts.espeak import synthesize

START_TIMEOUT_S = 10.0
CHUNK = 128  # a render quantum, as the worklets call the resampler
SPEECH_ERROR_LIMIT_DB = -45  # against soxr's best resampler, on real speech (-56 measured)
ALIAS_LIMIT_DB = -70  # a 15 kHz tone must not come back as a 9 kHz one at 24 kHz (-87 measured)


@pytest.fixture(scope="module")
def static_page() -> Iterator[str]:
    app = FastAPI()
    config = page_config(
        model="step-audio-r1",
        voices=["alloy"],
        default_voice="alloy",
        efforts=["low", "medium"],
        default_effort=None,
        auth_required=False,
        first_audio_target_seconds=0.92,
    )
    mount_page(app, config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = threading.Event()
    for _ in range(int(START_TIMEOUT_S / 0.05)):
        if server.started:
            break
        deadline.wait(0.05)
    assert server.started, "the static page server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=START_TIMEOUT_S)


@pytest.fixture(scope="module")
def page(playwright: Any, static_page: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with browser_page(playwright, tmp_path_factory.mktemp("profile")) as page:
        open_page(page, static_page + "/")
        yield page


RESAMPLE = """async ([samples, inRate, outRate, chunk]) => {
  const { Resampler } = await import("/web/resample.js");
  const resampler = new Resampler(inRate, outRate);
  const input = Float32Array.from(samples);
  const out = [];
  for (let i = 0; i < input.length; i += chunk) {
    out.push(...resampler.process(input.subarray(i, i + chunk)));
  }
  out.push(...resampler.flush());
  return out;
}"""


def resample(page: Any, samples: np.ndarray, in_rate: int, out_rate: int, chunk: int) -> np.ndarray:
    out = page.evaluate(RESAMPLE, [samples.tolist(), in_rate, out_rate, chunk])
    return np.asarray(out, dtype=np.float64)


def db(ratio: float) -> float:
    return 20 * np.log10(max(ratio, 1e-12))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


@pytest.mark.parametrize("in_rate", [48_000, 44_100])
def test_resampler_matches_soxr_on_speech(page: Any, in_rate: int) -> None:
    pcm, rate, _ = synthesize("what is seven times six")
    speech = soxr.resample(pcm.astype(np.float32) / 32768, rate, in_rate).astype(np.float64)
    ours = resample(page, speech, in_rate, 24_000, CHUNK)
    reference = soxr.resample(speech, in_rate, 24_000, quality="VHQ")
    # output n is input position n * in / out, for every such position inside the input
    assert len(ours) == int(np.ceil(len(speech) * 24_000 / in_rate))
    assert abs(len(ours) - len(reference)) <= 1  # soxr rounds the length instead
    common = min(len(ours), len(reference))
    error = rms(ours[:common] - reference[:common]) / rms(reference)
    assert db(error) < SPEECH_ERROR_LIMIT_DB, db(error)


def test_resampler_keeps_tones_and_stops_aliases(page: Any) -> None:
    t = np.arange(48_000) / 48_000
    kept = resample(page, 0.5 * np.sin(2 * np.pi * 1_000 * t), 48_000, 24_000, CHUNK)
    middle = slice(1_000, -1_000)  # away from the edges
    assert abs(rms(kept[middle]) / (0.5 / np.sqrt(2)) - 1) < 0.01
    alias = resample(page, 0.5 * np.sin(2 * np.pi * 15_000 * t), 48_000, 24_000, CHUNK)
    assert db(rms(alias[middle]) / (0.5 / np.sqrt(2))) < ALIAS_LIMIT_DB


def test_resampler_upsamples_and_streams_like_one_call(page: Any) -> None:
    rng = np.random.default_rng(0)
    noise = rng.uniform(-0.5, 0.5, 4_800)
    whole = resample(page, noise, 24_000, 44_100, len(noise))
    streamed = resample(page, noise, 24_000, 44_100, 97)  # chunks of an odd size
    assert len(whole) == int(np.ceil(len(noise) * 44_100 / 24_000))
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    with pytest.raises(Exception, match="inRate must be a positive number"):
        page.evaluate("async () => new (await import('/web/resample.js')).Resampler(0, 24000)")


JITTER = """async () => {
  const { JitterBuffer } = await import("/web/jitter.js");
  const rate = 1000;  // 1 frame = 1 ms, to read the figures easily
  const buffer = new JitterBuffer(rate, 80);
  const quantum = () => buffer.pull(new Float32Array(10));
  const ones = (n) => new Float32Array(n).fill(1);
  const log = [];
  buffer.push("a", ones(50));
  log.push(["prebuffering", quantum(), buffer.playedMs("a")]);
  buffer.push("a", ones(50));
  const out = new Float32Array(10);
  log.push(["started", buffer.pull(out), Array.from(out)]);
  for (let i = 0; i < 9; i++) quantum();
  log.push(["underrun", quantum(), buffer.playedMs("a"), buffer.underruns]);
  buffer.push("a", ones(30));
  buffer.end("a");
  const tail = [];
  for (let i = 0; i < 4; i++) tail.push(...quantum());
  log.push(["finished", tail, buffer.playedMs("a")]);
  buffer.push("b", ones(200));
  for (let i = 0; i < 5; i++) quantum();
  log.push(["stop", buffer.stop(), buffer.bufferedMs]);
  buffer.push("b", ones(100));
  log.push(["after stop", quantum(), buffer.bufferedMs]);
  return log;
}"""


def test_jitter_buffer(page: Any) -> None:
    log = {entry[0]: entry[1:] for entry in page.evaluate(JITTER)}
    # 50 ms queued is under the 80 ms prebuffer: silence, nothing played
    assert log["prebuffering"] == [[], 0]
    # at 100 ms it starts, and plays the audio as it was queued
    events, out = log["started"]
    assert events == [{"type": "started", "itemId": "a"}] and out == [1.0] * 10
    # the queue runs dry before the item's end: one underrun, 100 ms played
    events, played, underruns = log["underrun"]
    assert events == [{"type": "underrun", "itemId": "a"}] and played == 100 and underruns == 1
    # the item's last 30 ms play without waiting for the prebuffer once it has ended
    events, played = log["finished"]
    assert events == [
        {"type": "started", "itemId": "a"},
        {"type": "finished", "itemId": "a", "playedMs": 130},
    ] or events == [{"type": "finished", "itemId": "a", "playedMs": 130}]
    assert played == 130
    # a stop reports what was played of the unfinished item and drops the rest, at once
    cut, buffered = log["stop"]
    assert cut == {"b": 50} and buffered == 0
    assert log["after stop"] == [[], 0]  # later audio of a stopped item is ignored


def test_latency_split_and_send_log(page: Any) -> None:
    result = page.evaluate(
        """async () => {
          const { SendLog, splitLatency } = await import("/web/latency.js");
          const log = new SendLog();
          // 20 ms appends at t = 1001..1005; the third and fourth are speech
          for (let i = 1; i <= 5; i++) log.add(20, 1000 + i, i === 3 || i === 4 ? 0.2 : 0.001);
          return {
            at40: log.sentAt(40), at41: log.sentAt(41), beyond: log.sentAt(101),
            loud: log.lastLoudBefore(100), loudEarlier: log.lastLoudBefore(79),
            split: splitLatency({ speechEndAt: 1000, committedAt: 1500, firstAudioAt: 1700 }),
            unknown: splitLatency({ speechEndAt: null, committedAt: 1500, firstAudioAt: 1700 }),
          };
        }"""
    )
    assert (result["at40"], result["at41"], result["beyond"]) == (1002, 1003, None)
    assert (result["loud"], result["loudEarlier"]) == (80, 60)  # where the speech ended
    assert result["split"] == pytest.approx({"total": 0.7, "endpoint": 0.5, "server": 0.2})
    assert result["unknown"]["total"] is None and result["unknown"]["server"] == pytest.approx(0.2)


def test_session_settings_ask_for_reasoning_transcripts_and_turn_detection(page: Any) -> None:
    result = page.evaluate(
        """async () => {
          const m = await import("/web/realtime.js");
          return {
            session: m.sessionSettings({ voice: "alloy", speed: 0.5, effort: "high",
                                         transcriptionModel: "step-audio-r1" }),
            push: m.turnDetection("push"), server: m.turnDetection("server_vad"),
            semantic: m.turnDetection("semantic_vad"),
          };
        }"""
    )
    session = result["session"]
    assert session["include"] == ["response.reasoning_text"]
    assert session["reasoning"] == {"effort": "high"}
    assert session["audio"]["input"]["transcription"] == {"model": "step-audio-r1"}
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "speed": 0.5,
        "voice": "alloy",
    }
    assert result["push"] is None
    assert result["server"] == {"type": "server_vad"}
    assert result["semantic"] == {"type": "semantic_vad", "eagerness": "auto"}


def test_messages_in_plain_words(page: Any) -> None:
    result = page.evaluate(
        """async () => {
          const m = await import("/web/messages.js");
          const { ConnectionError } = await import("/web/realtime.js");
          const at = { url: "ws://host/v1/realtime", authRequired: true, serverReachable: true };
          return {
            full: m.explainConnectionError(new ConnectionError("full", { code: 1013 }), at),
            badKey: m.explainConnectionError(new ConnectionError("refused", { code: 1006 }), at),
            down: m.explainConnectionError(new ConnectionError("refused", { code: 1006 }),
                                           { ...at, serverReachable: false }),
            denied: m.explainMicrophoneError({ name: "NotAllowedError" }),
            none: m.explainMicrophoneError({ name: "NotFoundError" }),
            empty: m.explainServerError({ code: "input_audio_buffer_commit_empty", message: "" }),
          };
        }"""
    )
    assert result["full"].startswith("The server is full")
    assert "refused the key" in result["badKey"]
    assert "cannot be reached" in result["down"]
    assert "not allowed to use the microphone" in result["denied"]
    assert "No microphone" in result["none"]
    assert "hold the Talk button" in result["empty"]


LIVE_TRANSLATION = """async () => {
  const { LiveTranslator } = await import("/web/live.js");
  const live = new LiveTranslator();
  const silence = btoa(String.fromCharCode(...new Uint8Array(960)));  // 20 ms of PCM16 at 24 kHz
  const appended = [];
  for (let i = 0; i < 50; i++) {
    appended.push(live.toServer({ type: "input_audio_buffer.append", audio: silence }).type);
  }
  const from = (event) => live.fromServer(event);
  const reply = [
    ...from({ type: "response.event", delegation_id: "d",
              event: { type: "response.reasoning_text.delta", delta: "6 x 7" } }),
    ...from({ type: "session.output_audio.delta", delta: silence }),
    ...from({ type: "session.output_transcript.delta", delta: "Forty two.",
              start_ms: 1000, end_ms: 1500 }),
    // the user's transcript comes after the reply's first audio: the turn it answered
    ...from({ type: "session.input_transcript.delta", delta: "seven times six",
              start_ms: 200, end_ms: 900 }),
    ...from({ type: "session.usage.updated", usage: { seconds: 1 } }),
  ];
  // a reply withdrawn before it spoke leaves the page with its turn
  const withdrawn = [
    ...from({ type: "response.event", delegation_id: "e",
              event: { type: "response.reasoning_text.delta", delta: "hm" } }),
    ...from({ type: "session.usage.updated", usage: { seconds: 1 } }),
  ];
  const refused = from({ type: "error", error: { code: "invalid_value", message: "no",
                                                 client_event_id: "evt_page_3" } });
  let commit = null;
  try {
    live.toServer({ type: "input_audio_buffer.commit" });
  } catch (error) {
    commit = error.message;
  }
  return {
    appended: [...new Set(appended)], sentMs: live.sentMs, reply, withdrawn, refused, commit,
    truncate: live.toServer({ type: "conversation.item.truncate", item_id: "x" }),
    effort: live.toServer({ type: "session.update", session: { reasoning: { effort: "low" } } }),
    ignored: from({ type: "session.delegation.created", delegation: {} }),
  };
}"""


def test_live_translator_gives_app_js_realtime_events(page: Any) -> None:
    result = page.evaluate(LIVE_TRANSLATION)
    assert result["appended"] == ["session.input_audio.append"] and result["sentMs"] == 1000
    reply = result["reply"]
    assert [event["type"] for event in reply] == [
        # the user's turn and the reply's start, at its first sign
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "conversation.item.input_audio_transcription.delta",
        # its end, at the usage that follows every reply
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.done",
    ]
    user_item, response_id = reply[0]["item_id"], reply[3]["response"]["id"]
    item_id = reply[4]["item"]["id"]
    assert reply[1]["audio_end_ms"] == 1000  # the page finds the speech's end before it
    assert reply[2]["commit_unseen"] is True  # so the latency is not split
    assert all(event.get("response_id", response_id) == response_id for event in reply)
    assert reply[6]["item_id"] == item_id and reply[8]["item_id"] == user_item
    assert reply[10]["transcript"] == "Forty two."
    assert reply[11]["response"]["status"] == "completed"
    withdrawn = result["withdrawn"]
    deleted = [event["item_id"] for event in withdrawn if event["type"].endswith("deleted")]
    assert len(deleted) == 2 and user_item not in deleted
    assert withdrawn[-1]["response"]["status"] == "cancelled"
    # errors carry GPT-Live's client_event_id as the event_id app.js matches updates by
    assert result["refused"][0]["error"]["event_id"] == "evt_page_3"
    assert "no GPT-Live equivalent" in result["commit"]
    assert result["truncate"] is None  # the server cuts a reply spoken over itself
    assert result["effort"] == {
        "type": "session.update",
        "session": {
            "delegation": {
                "type": "responses",
                "responses": {"reasoning": {"summary": "auto", "effort": "low"}},
            }
        },
    }
    assert result["ignored"] == []


def test_live_session_start_and_url(page: Any) -> None:
    result = page.evaluate(
        """async () => {
          const m = await import("/web/live.js");
          return {
            start: m.liveStart({ model: "step-audio-r1", voice: "alloy" }),
            local: m.liveUrlFor("ws://127.0.0.1:8000/v1/realtime?model=x"),
            proxied: m.liveUrlFor("wss://example.com/speech/v1/realtime"),
          };
        }"""
    )
    assert result["start"] == {
        "type": "session.start",
        "session": {
            "model": "step-audio-r1",
            "audio": {"format": {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "alloy"}},
            "delegation": {
                "type": "responses",
                "responses": {"model": "step-audio-r1", "reasoning": {"summary": "auto"}},
            },
        },
    }
    assert result["local"] == "ws://127.0.0.1:8000/v1/live/sessions"
    assert result["proxied"] == "wss://example.com/speech/v1/live/sessions"


def test_choosing_gpt_live_disables_what_it_has_no_setting_for(page: Any) -> None:
    controls = """() => ({
      mode: document.getElementById("mode").disabled,
      speed: document.getElementById("speed").disabled,
      voice: document.getElementById("voice").disabled,
      effort: document.getElementById("effort").disabled,
      note: document.getElementById("dialect-note").hidden
        ? null : document.getElementById("dialect-note").textContent,
      speedWhy: document.getElementById("speed").title,
      pageMode: window.stepRealtimePage.mode,
    })"""
    page.select_option("#dialect", "live")
    live = page.evaluate(controls)
    page.select_option("#dialect", "realtime")
    realtime = page.evaluate(controls)
    assert live["mode"] and live["speed"] and live["pageMode"] == "server"
    assert not live["voice"] and not live["effort"]  # chosen before connecting; effort is kept
    assert "no push to talk" in live["note"] and "no speech speed" in live["note"]
    assert live["speedWhy"] == "GPT-Live has no speech speed setting."
    assert realtime == {
        "mode": False,
        "speed": False,
        "voice": False,
        "effort": False,
        "note": None,
        "speedWhy": "",
        "pageMode": "push",
    }


def test_a_refused_session_start_in_plain_words(page: Any) -> None:
    text = page.evaluate(
        """async () => {
          const m = await import("/web/messages.js");
          const { ConnectionError } = await import("/web/connection.js");
          const error = new ConnectionError("not_started",
                                            { serverError: { message: "unknown voice 'x'" } });
          return m.explainConnectionError(error, { url: "", authRequired: false,
                                                   serverReachable: true });
        }"""
    )
    assert text == "The server did not start the session: unknown voice 'x'."
