"""pipecat's GPT-Live service (`OpenAILiveLLMService`), unchanged but for its `base_url`, against
the real server on the embedded default model: a spoken question, answered, with no error event
on the wire and no error in the framework's log (the client runs in .venv-pipecat, through the
recording relay, as the Realtime framework tests do)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.frameworks.harness import QUESTION, ClientRun, run_client, venv_python
from tests.frameworks.test_frameworks import assert_clean, mentions

BYTES_PER_MS = 48  # PCM16 at 24 kHz: the format pipecat's Live service streams


@pytest.fixture(scope="module")
def pipecat_live_turn(
    realtime_server: str, speech: dict[str, Path], framework_dir: Path
) -> ClientRun:
    if not venv_python("pipecat").exists():
        pytest.fail("the pipecat environment is missing: run `bash scripts/setup_frameworks.sh`")
    args = ["--scenario", "turn", "--question", str(speech["question"])]
    dump = framework_dir / "pipecat-live-turn.wire.jsonl"
    return run_client("pipecat", "pipecat_live_client.py", args, realtime_server, dump)


def test_pipecat_live_answers_a_spoken_question_cleanly(pipecat_live_turn: ClientRun) -> None:
    run = pipecat_live_turn
    assert_clean(run)
    wire = run.wire
    sent = [e["type"] for e in wire.client_events() if e["type"] != "session.input_audio.append"]
    assert sent[0] == "session.start", run.summary()
    assert wire.server_events("session.started"), run.summary()
    audio_ms = sum(
        len(e["delta"]) * 3 / 4 / BYTES_PER_MS
        for e in wire.server_events("session.output_audio.delta")
    )
    assert audio_ms > 500, run.summary()
    said = "".join(e["delta"] for e in wire.server_events("session.output_transcript.delta"))
    assert mentions(said, "42"), f"{QUESTION!r} answered {said!r}"
    # the framework took the reply as its own: a response started and ended, in its context
    assert (
        run.one("step")["name"] == "user_transcript" and run.one("summary")["responses_done"] >= 1
    )
    assistant = [m for m in run.one("summary")["context"] if m.get("role") == "assistant"]
    assert assistant and mentions(str(assistant[0].get("content")), "42"), run.one("summary")
