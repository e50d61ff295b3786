"""The embedded model judged end to end through the server: spoken question in, spoken answer out.

Each held-out question (voices and phrasings never trained on, `streaming.arith.data`'s `eval`
split) is spoken by espeak-ng, sent over a real WebSocket to a server in its own process, and
the reply audio is transcribed by pocketsphinx with a grammar of the answer sentences ("seven
times six is forty two"). A reply counts as right when the last number heard is the result.
The transcript events are scored too, so that recognition errors and model errors can be told
apart. Questions are asked in sessions of `--turns` (default 20) one after the other on one
connection, as a person uses it: each is answered after the earlier questions and the model's
own answers (the server keeps at most the checkpoint's `max_history_turns` of them), and the
table splits the accuracy by the question's position in its session.

    python -m benchmarks.arith_e2e                # 60 questions (3 sessions), effort xhigh
    python -m benchmarks.arith_e2e --items 300 --effort minimal
    python -m benchmarks.arith_e2e --turns 1      # one session per question

Prints a table and writes benchmarks/results/arith_e2e.json (`--out` for another file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.server_process import free_port, server_process
from streaming.arith.data import answer_number, make_utterance, speak
from tts.asr import NumberRecognizer, number_grammar, words_to_numbers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))  # the client's source
from step_realtime_client import NoSpeechDetected, RealtimeClient, ServerRefused  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MODEL_RATE = 16_000
ANSWER_CARRIERS = [
    f"<number> {word} <number> is" for word in ("plus", "minus", "times", "divided by")
]
KINDS = ("held-out voice", "held-out phrasing", "both held out")  # eval items cycle these
POSITION_BANDS = ((1, 5), (6, 10), (11, 20))  # a question's place in its session


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=60, help="held-out questions")
    parser.add_argument("--turns", type=int, default=20, help="questions per session")
    parser.add_argument("--effort", default="xhigh", help="session reasoning effort")
    parser.add_argument("--seed", type=int, default=2000, help="question set (not training's)")
    parser.add_argument("--model", default=None, help="checkpoint (default: the embedded one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "arith_e2e.json")
    parser.add_argument("--tts-backend", default="espeak", help="the server's: espeak or piper")
    return parser.parse_args(argv)


async def ask_all(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    recognizer = NumberRecognizer(number_grammar(ANSWER_CARRIERS))
    session = {"reasoning": {"effort": args.effort}}
    rows = []
    for first in range(0, args.items, args.turns):
        client = await _open(url, session)
        try:
            for index in range(first, min(first + args.turns, args.items)):
                rows.append(await ask_one(client, recognizer, index, args.seed))
                rows[-1]["position"] = index - first + 1
        finally:
            await client.close()
    return rows


async def _open(url: str, session: dict[str, Any]) -> RealtimeClient:
    """A new session, once the server (at one session) has released the last one: it frees
    the slot only after the closed connection's replies and transcription have stopped."""
    for _ in range(50):
        client = RealtimeClient(url, session=session)
        try:
            await client.connect()
            return client
        except ServerRefused:
            await asyncio.sleep(0.2)
    raise RuntimeError("the server did not free its session slot within 10 s")


async def ask_one(
    client: RealtimeClient, recognizer: NumberRecognizer, index: int, seed: int
) -> dict[str, Any]:
    """Question `index` of the eval split, spoken into the session, and its reply judged."""
    utterance = make_utterance("eval", index, seed=seed)
    result = utterance.question.result
    row = {"question": utterance.text, "voice": utterance.voice, "kind": KINDS[index % 3]}
    try:
        reply = await client.ask(
            speak(utterance, seed=seed), realtime=False, sample_rate=MODEL_RATE
        )
    except NoSpeechDetected:  # the server's turn detection missed a quiet voice: a wrong row
        return {
            **row,
            "expected": result,
            "transcript": "",
            "heard": "",
            "no_speech": True,
            "audio_right": False,
            "text_right": False,
        }
    heard = recognizer.recognise(reply.audio, reply.sample_rate)
    numbers = words_to_numbers(heard.split())
    return {
        **row,
        "expected": result,
        "transcript": reply.transcript,
        "heard": heard,
        "reply_audio_s": round(len(reply.audio) / reply.sample_rate, 2),
        "no_speech": False,
        "audio_right": bool(numbers) and numbers[-1] == result,
        "text_right": answer_number(reply.transcript) == result,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(subset: list[dict[str, Any]], key: str) -> float:
        return sum(row[key] for row in subset) / max(1, len(subset))

    groups = {
        kind: [r for r in rows if kind == "all" or r["kind"] == kind] for kind in ("all", *KINDS)
    }
    for low, high in POSITION_BANDS:
        groups[f"questions {low}-{high}"] = [r for r in rows if low <= r["position"] <= high]
    table = {
        name: {
            "items": len(subset),
            "audio": rate(subset, "audio_right"),
            "text": rate(subset, "text_right"),
        }
        for name, subset in groups.items()
        if subset
    }
    confusions = Counter(
        (row["expected"], row["heard"])
        for row in rows
        if row["text_right"] and not row["audio_right"]
    )
    return {
        "table": table,
        "recognition_misses": [f"{e} heard as {h!r}" for (e, h), _ in confusions.items()],
        "not_heard": [f"{r['question']!r} ({r['voice']})" for r in rows if r["no_speech"]],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    port = free_port()
    model_args = ["--model", args.model] if args.model else []
    server_args = ["--max-sessions", "1", "--tts-backend", args.tts_backend, *model_args]
    with server_process("benchmarks.load", port, server_args):
        rows = asyncio.run(ask_all(f"ws://127.0.0.1:{port}/v1/realtime", args))
    report = {
        "command": "python -m benchmarks.arith_e2e " + " ".join(argv or sys.argv[1:]),
        "effort": args.effort,
        "turns_per_session": args.turns,
        **summarize(rows),
        "rows": rows,
    }
    print(f"{'questions':<20}{'items':>6}{'audio (asr)':>13}{'transcript':>12}")
    for kind, row in report["table"].items():
        print(f"{kind:<20}{row['items']:>6}{row['audio']:>13.1%}{row['text']:>12.1%}")
    for question in report["not_heard"]:
        print(f"no speech detected by the server in {question}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
