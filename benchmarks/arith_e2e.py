"""The embedded model judged end to end through the server: spoken question in, spoken answer out.

Each held-out question (voices and phrasings never trained on, `streaming.arith.data`'s `eval`
split) is spoken by espeak-ng, sent over a real WebSocket to a server in its own process, and
the reply audio is transcribed by pocketsphinx with a grammar of the answer sentences ("seven
times six is forty two"). A reply counts as right when the last number heard is the result.
The transcript events are scored too, so that recognition errors and model errors can be told
apart.

    python -m benchmarks.arith_e2e                # 60 questions, reasoning effort xhigh
    python -m benchmarks.arith_e2e --items 300 --effort minimal

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
from step_realtime_client import RealtimeClient  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MODEL_RATE = 16_000
ANSWER_CARRIERS = [
    f"<number> {word} <number> is" for word in ("plus", "minus", "times", "divided by")
]
KINDS = ("held-out voice", "held-out phrasing", "both held out")  # eval items cycle these


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=60, help="held-out questions")
    parser.add_argument("--effort", default="xhigh", help="session reasoning effort")
    parser.add_argument("--seed", type=int, default=2000, help="question set (not training's)")
    parser.add_argument("--model", default=None, help="checkpoint (default: the embedded one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "arith_e2e.json")
    return parser.parse_args(argv)


async def ask_all(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    recognizer = NumberRecognizer(number_grammar(ANSWER_CARRIERS))
    session = {"reasoning": {"effort": args.effort}}
    rows = []
    for index in range(args.items):
        utterance = make_utterance("eval", index, seed=args.seed)
        wave = speak(utterance, seed=args.seed)
        # One session per question: the model was trained with at most one turn of history.
        async with RealtimeClient(url, session=session) as client:
            reply = await client.ask(wave, realtime=False, sample_rate=MODEL_RATE)
        heard = recognizer.recognise(reply.audio, reply.sample_rate)
        numbers = words_to_numbers(heard.split())
        rows.append(
            {
                "question": utterance.text,
                "voice": utterance.voice,
                "kind": KINDS[index % 3],
                "expected": utterance.problem.result,
                "transcript": reply.transcript,
                "heard": heard,
                "audio_right": bool(numbers) and numbers[-1] == utterance.problem.result,
                "text_right": answer_number(reply.transcript) == utterance.problem.result,
            }
        )
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(subset: list[dict[str, Any]], key: str) -> float:
        return sum(row[key] for row in subset) / max(1, len(subset))

    table = {
        kind: {
            "items": len(subset),
            "audio": rate(subset, "audio_right"),
            "text": rate(subset, "text_right"),
        }
        for kind in ("all", *KINDS)
        for subset in [[r for r in rows if kind == "all" or r["kind"] == kind]]
    }
    confusions = Counter(
        (row["expected"], row["heard"])
        for row in rows
        if row["text_right"] and not row["audio_right"]
    )
    return {
        "table": table,
        "recognition_misses": [f"{e} heard as {h!r}" for (e, h), _ in confusions.items()],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    port = free_port()
    model_args = ["--model", args.model] if args.model else []
    with server_process("benchmarks.load", port, ["--max-sessions", "1", *model_args]):
        rows = asyncio.run(ask_all(f"ws://127.0.0.1:{port}/v1/realtime", args))
    report = {
        "command": "python -m benchmarks.arith_e2e " + " ".join(argv or sys.argv[1:]),
        "effort": args.effort,
        **summarize(rows),
        "rows": rows,
    }
    print(f"{'questions':<20}{'items':>6}{'audio (asr)':>13}{'transcript':>12}")
    for kind, row in report["table"].items():
        print(f"{kind:<20}{row['items']:>6}{row['audio']:>13.1%}{row['text']:>12.1%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
