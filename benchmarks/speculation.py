"""Speculation trigger: what starting a response N ms into a pause costs and what it can save.

The server starts a response speculatively once a pause inside a turn reaches
`--speculative-start-ms` (docs/ARCHITECTURE.md) and throws it away if speech resumes. A short
trigger hides more of the silence window; it also fires in the pauses between words. This runs
the server's own turn-taking machine (`streaming.turns.machine.TurnTaking`, webrtcvad, default
`server_vad` settings) over spoken questions from the arithmetic data generator (espeak-ng,
every voice, 120-240 words per minute, gain and noise) and, per trigger, counts:

- false starts per turn: pauses inside the question that reach the trigger (each one is a
  speculative response started and discarded; its tokens are the cost);
- turns with at least one false start;
- the most speculation can save: from the trigger to the commit at the end of the silence
  window, in ms and as a fraction of `silence_duration_ms` (reached when the response takes at
  least that long to its first audio, as reasoning does).

    python -m benchmarks.speculation                # 300 questions
    python -m benchmarks.speculation --items 60     # quicker

Prints a table and writes benchmarks/results/speculation.json. No model, no server: only the
detector, so the counts are exact for these clips, not timings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
TRIGGERS_MS = (30, 60, 90, 120, 150, 200, 300)
TAIL_MS = 700  # silence after each question: longer than the window, so every turn commits
FRAME_SAMPLES = 480  # webrtcvad's 30 ms frame: fed one at a time, every decision is seen


def speculations(pcm: np.ndarray, trigger_ms: int) -> tuple[int, float | None]:
    """(false starts, ms from the kept start to the commit) of the server's own turn-taking
    machine over one question with `--speculative-start-ms` = `trigger_ms`, fed frame by frame.
    A false start is a `Speculate` that speech then voided; the kept one is the last, which the
    commit confirms (None where the turn never committed)."""
    from streaming.turns.detection import ServerVad
    from streaming.turns.machine import Resumed, Speculate, SpeechStopped, TurnTaking

    turns = TurnTaking(ServerVad(), lambda: "item", speculate_after_ms=trigger_ms)
    frame = FRAME_SAMPLES
    false_starts, guessed_at = 0, None
    for start in range(0, len(pcm) - frame + 1, frame):
        for event in turns.append(pcm[start : start + frame]):
            if isinstance(event, Speculate):
                guessed_at = turns.buffer.clock_ms
            elif isinstance(event, Resumed):
                false_starts, guessed_at = false_starts + 1, None
            elif isinstance(event, SpeechStopped):
                saved = None if guessed_at is None else event.audio_end_ms - guessed_at
                return false_starts, saved
    return false_starts, None


def clips(items: int) -> list[np.ndarray]:
    """16 kHz int16 questions from the dev and eval splits (training and held-out voices)."""
    from server.protocol.audio import MODEL_SAMPLE_RATE
    from streaming.arith.data import make_utterance, speak

    waves = []
    for i in range(items):
        split = "eval" if i % 2 else "dev"
        wave = speak(make_utterance(split, i // 2, seed=11), seed=11)
        tail = np.zeros(MODEL_SAMPLE_RATE * TAIL_MS // 1000, np.float32)
        waves.append((np.concatenate([wave, tail]) * 32767).astype(np.int16))
    return waves


def measure(items: int) -> dict:
    from streaming.turns.detection import ServerVad

    window = ServerVad().silence_duration_ms
    questions = clips(items)
    rows = []
    committed = 0
    for trigger in TRIGGERS_MS:
        runs = [speculations(pcm, trigger) for pcm in questions]
        kept = [(false, saved) for false, saved in runs if saved is not None]
        committed = len(kept)
        ceiling = float(np.median([saved for _, saved in kept]))
        rows.append(
            {
                "trigger_ms": trigger,
                "false_starts_per_turn": float(np.mean([false for false, _ in kept])),
                "turns_with_false_start": float(np.mean([false > 0 for false, _ in kept])),
                "most_saved_ms": ceiling,
                "most_saved_fraction_of_window": ceiling / window,
            }
        )
    return {
        "config": {
            "items": items,
            "committed_turns": committed,
            "silence_duration_ms": window,
            "vad": "server_vad defaults, webrtcvad",
        },
        "triggers": rows,
    }


def print_table(report: dict) -> None:
    config = report["config"]
    print(f"{config['committed_turns']} turns, silence window {config['silence_duration_ms']} ms")
    print(
        f"{'trigger ms':>10}{'false starts/turn':>19}{'turns with one':>16}"
        f"{'most saved ms':>15}{'of window':>11}"
    )
    for row in report["triggers"]:
        print(
            f"{row['trigger_ms']:>10}{row['false_starts_per_turn']:>19.2f}"
            f"{row['turns_with_false_start']:>16.0%}{row['most_saved_ms']:>15.0f}"
            f"{row['most_saved_fraction_of_window']:>11.0%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=300, help="spoken questions")
    parser.add_argument("--out", type=Path, default=RESULTS / "speculation.json")
    args = parser.parse_args(argv)
    report = measure(args.items)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
