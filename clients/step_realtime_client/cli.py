"""`step-realtime-client`: talk to a realtime speech-to-speech server from a terminal.

    step-realtime-client ask question.wav          # reasoning (dimmed), answer, reply.wav, latency
    step-realtime-client chat                      # microphone + speaker, barge-in (audio extra)
    step-realtime-client events question.wav       # every server event as a JSON line
    step-realtime-client ask question.wav --dialect live   # the same in GPT-Live

The server URL and key come from --url / --api-key or STEP_REALTIME_URL / STEP_REALTIME_API_KEY;
a URL of either dialect's endpoint serves both (the client picks its dialect's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from step_realtime_client.audio import AudioFileError, write_wav
from step_realtime_client.client import DEFAULT_URL, SpeechClient
from step_realtime_client.dialects import DIALECTS, client_for
from step_realtime_client.errors import AuthenticationError, RealtimeError
from step_realtime_client.events import (
    AudioDelta,
    ErrorEvent,
    OutputTextDelta,
    ReasoningDelta,
    ServerEvent,
    SpeechStarted,
    TranscriptDelta,
)
from step_realtime_client.gpt_live import backend_delegation
from step_realtime_client.live import (
    DeviceError,
    SimulatedPlayer,
    SpeakerPlayer,
    converse,
    microphone,
)
from step_realtime_client.reply import Reply

URL_ENV = "STEP_REALTIME_URL"
KEY_ENV = "STEP_REALTIME_API_KEY"
DIM, RESET = "\033[2m", "\033[0m"
EXIT_ERROR, EXIT_AUTH, EXIT_INTERRUPTED = 1, 3, 130
EFFORTS = ("minimal", "low", "medium", "high", "xhigh")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="step-realtime-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"server WebSocket URL (env {URL_ENV}; default %(default)s)",
    )
    common.add_argument(
        "--api-key",
        default=os.environ.get(KEY_ENV),
        help=f"API key or client secret (env {KEY_ENV})",
    )
    common.add_argument(
        "--dialect",
        choices=sorted(DIALECTS),
        default="realtime",
        help="OpenAI Realtime, or GPT-Live (default %(default)s)",
    )
    common.add_argument(
        "--beta", action="store_true", help="speak the beta protocol (OpenAI-Beta: realtime=v1)"
    )
    common.add_argument("--voice", help="voice of the reply (server default if omitted)")
    common.add_argument("--effort", choices=EFFORTS, help="reasoning effort (scheduling mode)")
    common.add_argument("--instructions", help="system instructions for the session")

    ask = commands.add_parser(
        "ask",
        parents=[common],
        help="ask one spoken question from a file",
        description="Stream an audio file as a question, print the "
        "reasoning (dimmed) and the answer as they stream, save the "
        "reply's audio and print the latency split.",
    )
    ask.add_argument("file", type=Path, help="the question: WAV, FLAC, OGG... any rate")
    ask.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("reply.wav"),
        help="where to save the reply's audio (default %(default)s)",
    )
    ask.add_argument(
        "--fast",
        action="store_true",
        help="send the audio as fast as possible instead of in real time (the latency "
        "then measures processing only: the turn-end silence takes no time)",
    )
    ask.add_argument("--no-color", action="store_true", help="no ANSI dimming of the reasoning")
    ask.set_defaults(run=run_ask)

    chat = commands.add_parser(
        "chat",
        parents=[common],
        help="talk with the microphone",
        description="A live conversation: microphone in, speaker out; "
        "speak over a reply to interrupt it. Needs the audio extra; "
        "use headphones, or the reply's echo interrupts itself.",
    )
    chat.add_argument("--input-device", help="microphone (sounddevice name or index)")
    chat.add_argument("--output-device", help="speaker (sounddevice name or index)")
    chat.set_defaults(run=run_chat)

    events = commands.add_parser(
        "events",
        parents=[common],
        help="dump raw events as JSON lines",
        description="Print every server event as one JSON line: "
        "for a question from FILE until its reply is done, or from "
        "the microphone until interrupted.",
    )
    events.add_argument("file", type=Path, nargs="?", help="question audio (default: microphone)")
    events.add_argument("--fast", action="store_true", help="send FILE as fast as possible")
    events.add_argument(
        "--full-audio",
        action="store_true",
        help="print audio deltas in full (default: their size only)",
    )
    events.set_defaults(run=run_events)
    return parser


def session_from(args: argparse.Namespace) -> dict[str, Any]:
    if args.dialect == "live":
        return live_session_from(args)
    session: dict[str, Any] = {}
    if args.effort:
        session["reasoning"] = {"effort": args.effort}
    if args.instructions:
        session["instructions"] = args.instructions
    if args.voice:
        if args.beta:
            session["voice"] = args.voice
        else:
            session["audio"] = {"output": {"voice": args.voice}}
    return session


def live_session_from(args: argparse.Namespace) -> dict[str, Any]:
    """`session.start`'s settings."""
    session: dict[str, Any] = {}
    if args.instructions:
        session["instructions"] = args.instructions
    if args.voice:
        session["audio"] = {"output": {"voice": args.voice}}
    if args.effort:
        session["delegation"] = backend_delegation(effort=args.effort)
    return session


def client_from(args: argparse.Namespace) -> SpeechClient:
    if args.beta and args.dialect != "realtime":
        raise RealtimeError("--beta is a version of the Realtime dialect, not of GPT-Live")
    options = {"beta": True} if args.beta else {}
    return client_for(
        args.dialect, args.url, api_key=args.api_key, session=session_from(args), **options
    )


# --- ask -----------------------------------------------------------------------------------


class StreamPrinter:
    """Prints reasoning (dimmed, when colour is on) and the answer as their deltas arrive."""

    def __init__(self, out: TextIO, color: bool) -> None:
        self.out = out
        self.color = color
        self.section: str | None = None

    def __call__(self, event: ServerEvent) -> None:
        if isinstance(event, ReasoningDelta):
            self._write("reasoning", event.delta, dim=True)
        elif isinstance(event, (TranscriptDelta, OutputTextDelta)):
            self._write("answer", event.delta, dim=False)

    def _write(self, section: str, text: str, dim: bool) -> None:
        if section != self.section:
            if self.section is not None:
                self.out.write("\n")
            self.out.write(f"{section}: ")
            self.section = section
        self.out.write(f"{DIM}{text}{RESET}" if dim and self.color else text)
        self.out.flush()

    def end(self) -> None:
        if self.section is not None:
            self.out.write("\n")


async def run_ask(args: argparse.Namespace) -> int:
    printer = StreamPrinter(sys.stdout, color=sys.stdout.isatty() and not args.no_color)
    async with client_from(args) as client:
        reply = await client.ask(args.file, realtime=not args.fast, on_event=printer)
    printer.end()
    write_wav(args.output, reply.audio, reply.sample_rate)
    print(f"reply: {args.output} ({reply.audio_seconds:.2f} s of audio, {reply.status})")
    print(latency_report(reply))
    return 0


def latency_report(reply: Reply) -> str:
    t = reply.timings

    def s(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f} s"

    split = ""
    if t.endpoint_delay is not None:  # GPT-Live sends no turn events to split it by
        split = f" = endpoint {s(t.endpoint_delay)} + server {s(t.server_latency)}"
    lines = [
        f"latency: first packet {s(t.first_packet_latency)}{split}; "
        f"reply done after {s(t.response_time)}"
    ]
    if reply.stage_seconds:
        stages = ", ".join(f"{k} {v:.3f} s" for k, v in reply.stage_seconds.items())
        lines.append(f"server stages: {stages}")
    underruns = reply.underruns()
    if underruns:
        total = sum(u.gap_s for u in underruns)
        lines.append(f"playback would have starved {len(underruns)} times ({total:.3f} s)")
    return "\n".join(lines)


# --- events --------------------------------------------------------------------------------


def json_line_printer(full_audio: bool) -> Callable[[ServerEvent], None]:
    def show(event: ServerEvent) -> None:
        raw = event.raw
        if isinstance(event, AudioDelta) and not full_audio:
            raw = {**raw, "delta": f"<{len(event.audio)} bytes>"}
        print(json.dumps(raw), flush=True)

    return show


async def run_events(args: argparse.Namespace) -> int:
    show = json_line_printer(args.full_audio)
    async with client_from(args) as client:
        for raw in client.handshake_events:
            print(json.dumps(raw), flush=True)
        if args.file is not None:
            await client.ask(args.file, realtime=not args.fast, on_event=show)
            return 0
        await converse(client, microphone(), SimulatedPlayer(), show)
    return 0


# --- chat ----------------------------------------------------------------------------------


async def run_chat(args: argparse.Namespace) -> int:
    speaker = SpeakerPlayer(_device(args.output_device))
    printer = StreamPrinter(sys.stdout, color=sys.stdout.isatty())

    def show(event: ServerEvent) -> None:
        if isinstance(event, SpeechStarted):
            printer.end()
            printer.section = None
            print("[listening]", flush=True)
        elif isinstance(event, ErrorEvent):
            print(f"\nserver error {event.code}: {event.message}", file=sys.stderr)
        printer(event)

    print("speak; Ctrl-C ends the chat", flush=True)
    try:
        async with client_from(args) as client:
            await converse(client, microphone(_device(args.input_device)), speaker, show)
    finally:
        speaker.close()
    return 0


def _device(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


# --- entry point ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = asyncio.run(args.run(args))
        return code
    except AuthenticationError as error:
        print(f"error: {error}. Check --api-key or {KEY_ENV}.", file=sys.stderr)
        return EXIT_AUTH
    except (RealtimeError, AudioFileError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
