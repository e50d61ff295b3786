"""Held-out evaluation of the embedded model: `python -m streaming.arith.evaluate [--model DIR]`.

Every clip is synthesised afresh from the `eval` split (held-out voices, phrasings, off-task
sentences, system prompts, tool schemas and tool-output forms; never seen in training), goes
through the serving front end (`log_mel`) and the checkpoint as `load_checkpoint` loads it, and
is answered by greedy decoding from prompts the serving `PromptBuilder` renders:

- single questions in `think` (full reasoning, then the answer) and `no_think`
  (`<think>\\n\\n</think>` given): right when the number the answer states is the result; a
  `REJECTION` of a real question is a false rejection;
- 20-question sessions (think): each question after the model's own earlier answers, scored by
  position (1-5, 6-10, 11-20);
- transcription (StepFun's ASR prompt): word error rate against the words spoken;
- with a `calculate` tool declared: how often the reply is a call with the right expression,
  and, given the tool's output (sometimes not the true value), how often the spoken answer
  states the number it got back;
- off-task speech, questions cut short, speech fragments, silence and noise: how often the
  reply is `REJECTION`;
- single questions after an unknown (held-out) system prompt.

Prints a table and writes `benchmarks/results/arith_eval.json` (with every wrong reply).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streaming.arith import context
from streaming.arith.batching import greedy_generate
from streaming.arith.data import (
    DECLINED_KINDS,
    REJECTION,
    Utterance,
    answer_number,
    make_item,
    make_utterance,
    speak,
)
from streaming.arith.examples import Exchange, SequenceBuilder, Session, ToolUse, Turn
from streaming.arith.melcache import MelCache
from streaming.model.frontend import log_mel
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.model.tokens import THINK_END, TOOL_CALL, TOOL_CALL_END

RESULTS_FILE = Path("benchmarks/results/arith_eval.json")
EVAL_MODES = ("think", "no_think")
EVAL_SEED = 1000  # other problems, voices and noise than the in-training monitor (seed 0)
SESSION_SEED = 1001  # the sessions' questions: not the single questions'
BATCH = 32
MAX_NEW_TOKENS = 64  # the longest target (a call after its reasoning) is about 45 tokens
SESSION_TURNS = 20
POSITION_BANDS = ((1, 5), (6, 10), (11, 20))
KINDS = {
    (True, False): "held-out voice",
    (False, True): "held-out phrasing",
    (True, True): "both held out",
    (False, False): "training voice and phrasing",
}
_CALL = re.compile(
    re.escape(TOOL_CALL) + r"function\n(.*?)\n(.*?)" + re.escape(TOOL_CALL_END), re.S
)


@dataclass(frozen=True)
class Reply:
    utterance: Utterance
    mode: str
    text: str  # everything the model wrote (reasoning, </think>, answer)
    answer: str  # what would be spoken (a call is not)

    @property
    def number(self) -> int | None:
        return answer_number(self.answer)

    @property
    def correct(self) -> bool:
        return not self.utterance.declined and self.number == self.utterance.question.result

    @property
    def declined(self) -> bool:
        return REJECTION in self.answer

    @property
    def heard(self) -> bool:
        """The reasoning names the question right (think mode): listening, not arithmetic."""
        return f"I hear: {self.utterance.question.heard}." in self.text

    @property
    def call(self) -> tuple[str, str] | None:
        """(name, arguments) of the tool call the reply makes, if it makes one."""
        match = _CALL.search(self.text)
        return (match.group(1), match.group(2)) if match else None

    @property
    def kind(self) -> str:
        u = self.utterance
        return KINDS[(u.held_out_voice, u.held_out_phrasing)]


def split_reply(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a generated reply; with no `</think>`, all of it is reasoning."""
    reasoning, found, answer = text.partition(THINK_END)
    return (reasoning.strip(), answer.strip()) if found else (text.strip(), "")


def spoken_part(answer: str) -> str:
    """The answer without its tool calls (what the server would speak)."""
    return _CALL.sub("", answer).strip()


def generate(
    model: StepAudio2ForCausalLM,
    builder: SequenceBuilder,
    sessions: Sequence[Session],
    mels: Sequence[torch.Tensor],
) -> list[str]:
    """Greedy replies to `sessions` (their turns' clips index `mels`), decoded text."""
    texts = []
    tokenizer = builder.prompts.tokenizer
    for start in range(0, len(sessions), BATCH):
        batch = sessions[start : start + BATCH]
        prompts, clips = zip(*(builder.prompt_ids(s) for s in batch), strict=True)
        outputs = greedy_generate(
            model,
            prompts,
            [mels[c] for clip_list in clips for c in clip_list],
            builder.special.audio_patch,
            builder.special.stop_ids,
            MAX_NEW_TOKENS,
        )
        texts += [str(tokenizer.decode(ids, skip_special_tokens=False)) for ids in outputs]
    return texts


def replies(
    model: StepAudio2ForCausalLM,
    builder: SequenceBuilder,
    sessions: Sequence[Session],
    mels: Sequence[torch.Tensor],
) -> list[Reply]:
    """`generate`, each text read as a `Reply`."""
    texts = generate(model, builder, sessions, mels)
    return [to_reply(s, t) for s, t in zip(sessions, texts, strict=True)]


def to_reply(session: Session, text: str) -> Reply:
    answer = split_reply(text)[1] if session.mode == "think" else text.strip()
    return Reply(session.live.utterance, session.mode, text, spoken_part(answer))


def answer_replies(
    model: StepAudio2ForCausalLM,
    builder: SequenceBuilder,
    utterances: Sequence[Utterance],
    mels: Sequence[torch.Tensor],
    mode: str,
    system: str | None = None,
) -> list[Reply]:
    """Greedy replies to single spoken clips (`mels` from `log_mel`) in one mode."""
    sessions = [
        Session(Turn(u, i, mels[i].shape[-1]), system=system, mode=mode)
        for i, u in enumerate(utterances)
    ]
    return replies(model, builder, sessions, mels)


def held_out_accuracy(
    model: StepAudio2ForCausalLM,
    builder: SequenceBuilder,
    cache: MelCache,
    indices: Iterable[int],
    modes: Sequence[str] = EVAL_MODES,
) -> list[Reply]:
    """Replies to cached clips (the trainer's periodic check)."""
    indices = list(indices)
    utterances = [cache.utterances[i] for i in indices]
    mels = [cache.mel(i) for i in indices]
    return [r for mode in modes for r in answer_replies(model, builder, utterances, mels, mode)]


def accuracy_report(replies: Sequence[Reply]) -> dict[str, float]:
    """Answer accuracy per mode and per mode and kind of held-out item; in think mode also how
    often the reasoning heard the question right (`heard_think`), and the false rejections."""
    report: dict[str, float] = {}
    groups: dict[str, list[Reply]] = {}
    for reply in replies:
        groups.setdefault(f"acc_{reply.mode}", []).append(reply)
        groups.setdefault(f"acc_{reply.mode}/{reply.kind}", []).append(reply)
    for name, group in sorted(groups.items()):
        report[name] = _rate(r.correct for r in group)
    think = [r for r in replies if r.mode == "think"]
    if think:
        report["heard_think"] = _rate(r.heard for r in think)
    report["false_rejection"] = _rate(r.declined for r in replies)
    return report


def _rate(flags: Iterable[bool]) -> float:
    values = list(flags)
    return round(sum(values) / max(1, len(values)), 4)


# -- the evaluation suites --------------------------------------------------------------------
@dataclass
class Clips:
    """Held-out clips and their log-mels (a turn's `clip` indexes `mels`)."""

    utterances: list[Utterance]
    mels: list[torch.Tensor]

    def add(self, utterances: Sequence[Utterance], seed: int) -> list[Turn]:
        turns = []
        for u in utterances:
            mel = log_mel(speak(u, seed))
            turns.append(Turn(u, len(self.mels), mel.shape[-1]))
            self.utterances.append(u)
            self.mels.append(mel)
        return turns


def session_accuracy(
    model: StepAudio2ForCausalLM,
    builder: SequenceBuilder,
    sessions: Sequence[Sequence[Turn]],
    mels: Sequence[torch.Tensor],
    mode: str = "think",
) -> list[tuple[int, Reply]]:
    """(position, reply) of every question of each session, asked one after the other with the
    model's own spoken answers as the history (as the server keeps it)."""
    histories: list[list[Exchange]] = [[] for _ in sessions]
    out = []
    for position in range(max(map(len, sessions))):
        live = [(i, s[position]) for i, s in enumerate(sessions) if position < len(s)]
        batch = [Session(turn, tuple(histories[i]), mode=mode) for i, turn in live]
        for (i, turn), session, text in zip(
            live, batch, generate(model, builder, batch, mels), strict=True
        ):
            reply = to_reply(session, text)
            histories[i].append(Exchange(turn, reply.answer))
            out.append((position + 1, reply))
    return out


def tool_replies(
    model: StepAudio2ForCausalLM,
    builder: SequenceBuilder,
    turns: Sequence[Turn],
    mels: Sequence[torch.Tensor],
    seed: int,
) -> dict[str, Any]:
    """With `calculate` declared (held-out schemas): is the reply a call with the right
    expression; given the tool's output (held-out forms, sometimes not the true value), does the
    answer speak its number; and with only other tools declared, does it compute as alone."""
    rng = np.random.default_rng([seed, 77])
    calls = [Session(t, tools=tuple(context.tools(True, True, rng)), mode="think") for t in turns]
    call_replies = replies(model, builder, calls, mels)
    expected = [_expected_call(s.live.utterance) for s in calls]
    results = []
    for session in calls:
        problem = session.live.utterance.question
        value = context.returned_value(problem.result, rng)
        output = context.tool_output(value, True, rng)
        tool = ToolUse(_expected_call(session.live.utterance)[1], output)
        results.append(replace(session, live_tool=tool))
    result_replies = replies(model, builder, results, mels)
    values = [context.output_value(s.live_tool.output) for s in results if s.live_tool]
    others = [Session(t, tools=tuple(context.tools(True, False, rng)), mode="think") for t in turns]
    other_replies = replies(model, builder, others, mels)
    wrong = [
        _wrong(r, expected_call=str(e))
        for r, e in zip(call_replies, expected, strict=True)
        if r.call != e
    ]
    wrong += [
        _wrong(r, tool_value=v)
        for r, v in zip(result_replies, values, strict=True)
        if r.number != v
    ]
    wrong += [_wrong(r, tools="other") for r in other_replies if not r.correct]
    return {
        "tool_call_right": _rate(r.call == e for r, e in zip(call_replies, expected, strict=True)),
        "tool_result_spoken": _rate(
            r.number == v for r, v in zip(result_replies, values, strict=True)
        ),
        "tool_result_false_values": _rate(
            v != s.live.utterance.question.result for s, v in zip(results, values, strict=True)
        ),
        "other_tools_accuracy": _rate(r.correct for r in other_replies),
        "other_tools_calls": _rate(r.call is not None for r in other_replies),
        "wrong": wrong,
    }


def _expected_call(utterance: Utterance) -> tuple[str, str]:
    p = utterance.question
    return context.TOOL_NAME, context.call_arguments(p.a, p.op, p.b)


def transcription_replies(
    model: StepAudio2ForCausalLM,
    builder: SequenceBuilder,
    turns: Sequence[Turn],
    mels: Sequence[torch.Tensor],
) -> list[tuple[Turn, str]]:
    """(turn, transcript written) for each clip, from StepFun's ASR prompt."""
    out = []
    tokenizer = builder.prompts.tokenizer
    for start in range(0, len(turns), BATCH):
        batch = turns[start : start + BATCH]
        outputs = greedy_generate(
            model,
            [builder.transcription_prompt(t) for t in batch],
            [mels[t.clip] for t in batch],
            builder.special.audio_patch,
            builder.special.stop_ids,
            MAX_NEW_TOKENS,
        )
        out += [
            (t, str(tokenizer.decode(ids, skip_special_tokens=True)).strip())
            for t, ids in zip(batch, outputs, strict=True)
        ]
    return out


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level edit distance (substitutions, insertions, deletions)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


def word_error_rate(pairs: Sequence[tuple[str, str]]) -> float:
    words = sum(len(ref.split()) for ref, _ in pairs)
    return round(sum(word_errors(ref, hyp) for ref, hyp in pairs) / max(1, words), 4)


def evaluate_checkpoint(
    path: Path | None, items: int, seed: int = EVAL_SEED, sessions: int = 15
) -> dict[str, Any]:
    from streaming.default_model import default_checkpoint
    from streaming.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(path or default_checkpoint(), dtype=torch.float32)
    model = loaded.model
    builder = SequenceBuilder(loaded.tokenizer, loaded.special)
    clips = Clips([], [])
    singles = clips.add([make_utterance("eval", i, seed) for i in range(items)], seed)
    utterances = [t.utterance for t in singles]
    single_mels = [clips.mels[t.clip] for t in singles]
    single = [
        r
        for mode in EVAL_MODES
        for r in answer_replies(model, builder, utterances, single_mels, mode)
    ]
    result: dict[str, Any] = {
        "checkpoint": "embedded default" if path is None else loaded.path.name,
        "items": items,
        "seed": seed,
        "accuracy": accuracy_report(single),
    }
    wrong = [_wrong(r) for r in single if not r.correct]

    # 20-question sessions of held-out questions
    session_turns = [
        clips.add(
            [
                make_utterance("eval", s * SESSION_TURNS + i, SESSION_SEED)
                for i in range(SESSION_TURNS)
            ],
            SESSION_SEED,
        )
        for s in range(sessions)
    ]
    positioned = session_accuracy(model, builder, session_turns, clips.mels)
    result["sessions"] = {"sessions": sessions, "turns": SESSION_TURNS} | {
        f"acc_{low}-{high}": _rate(r.correct for p, r in positioned if low <= p <= high)
        for low, high in POSITION_BANDS
    }
    wrong += [_wrong(r, position=p) for p, r in positioned if not r.correct]

    # transcription: the single questions' clips
    written = transcription_replies(model, builder, singles, clips.mels)
    result["transcription"] = {
        f"wer/{kind}": word_error_rate(
            [(t.utterance.transcript or "", text) for t, text in written if _kind(t) == kind]
        )
        for kind in ("held-out voice", "held-out phrasing", "both held out")
    }
    wrong += [
        {"transcribe": t.utterance.text, "voice": t.utterance.voice, "wrote": text}
        for t, text in written
        if text != t.utterance.transcript and _kind(t) == "held-out voice"
    ]

    # a declared calculate tool
    tools = tool_replies(model, builder, singles, clips.mels, seed)
    wrong += tools.pop("wrong")
    result["tools"] = tools

    # clips to decline
    declined: dict[str, list[Reply]] = {}
    for kind in DECLINED_KINDS:
        count = max(1, items // 5)
        batch = [make_item("eval", kind, i, seed) for i in range(count)]
        turns = clips.add(batch, seed)
        declined[kind] = answer_replies(
            model,
            builder,
            [t.utterance for t in turns],
            [clips.mels[t.clip] for t in turns],
            "think",
        )
        wrong += [_wrong(r) for r in declined[kind] if not r.declined]
    result["rejection"] = {kind: _rate(r.declined for r in rs) for kind, rs in declined.items()}
    result["rejection"]["all"] = _rate(r.declined for rs in declined.values() for r in rs)

    # an unknown system prompt before single questions
    rng = np.random.default_rng([seed, 91])
    prompted = [Session(t, system=context.system_prompt(True, rng), mode="think") for t in singles]
    prompted_replies = replies(model, builder, prompted, clips.mels)
    result["system_prompt"] = {"acc_think": _rate(r.correct for r in prompted_replies)}
    wrong += [_wrong(r, system=True) for r in prompted_replies if not r.correct]
    result["wrong"] = wrong
    return result


def _kind(turn: Turn) -> str:
    u = turn.utterance
    return KINDS[(u.held_out_voice, u.held_out_phrasing)]


def _wrong(reply: Reply, **extra: Any) -> dict[str, Any]:
    u = reply.utterance
    return {
        "mode": reply.mode,
        "said": u.text,
        "clip": u.kind,
        "voice": u.voice,
        "rate_wpm": u.rate_wpm,
        "pitch": u.pitch,
        "expected": None if u.declined else u.question.result,
        "reply": reply.text,
        "kind": reply.kind,
        **extra,
    }


def print_table(result: dict[str, Any]) -> None:
    accuracy = result["accuracy"]
    kinds = [k for k in KINDS.values() if any(k in name for name in accuracy)]
    print(f"{'mode':<10} {'all':>7} " + " ".join(f"{k:>18}" for k in kinds))
    for mode in EVAL_MODES:
        cells = [accuracy.get(f"acc_{mode}/{k}") for k in kinds]
        print(
            f"{mode:<10} {accuracy.get(f'acc_{mode}', 0):>7.1%} "
            + " ".join(f"{c:>18.1%}" if c is not None else f"{'-':>18}" for c in cells)
        )
    if "heard_think" in accuracy:
        print(f"reasoning names the question right (think): {accuracy['heard_think']:.1%}")
    print(f"false rejections of real questions: {accuracy['false_rejection']:.1%}")
    rows = []
    if "sessions" in result:
        s = result["sessions"]
        for low, high in POSITION_BANDS:
            rows.append((f"session questions {low}-{high} (think)", s[f"acc_{low}-{high}"]))
    if "transcription" in result:
        for name, value in result["transcription"].items():
            rows.append((f"transcription {name.replace('wer/', 'WER, ')}", value))
    if "tools" in result:
        t = result["tools"]
        rows += [
            ("calculate declared: right call", t["tool_call_right"]),
            ("calculate declared: tool result spoken", t["tool_result_spoken"]),
            ("other tools only: answered right", t["other_tools_accuracy"]),
            ("other tools only: any call made", t["other_tools_calls"]),
        ]
    if "rejection" in result:
        rows += [(f"declined: {k}", v) for k, v in result["rejection"].items()]
    if "system_prompt" in result:
        rows.append(("held-out system prompt (think)", result["system_prompt"]["acc_think"]))
    for name, value in rows:
        print(f"{name:<44} {value:>7.1%}")
    print(f"{result['items']} held-out questions per mode; {len(result['wrong'])} wrong replies")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint directory (default: the embedded model)",
    )
    parser.add_argument("--items", type=int, default=300, help="questions per mode")
    parser.add_argument("--sessions", type=int, default=15, help="20-question sessions")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    result = evaluate_checkpoint(args.model, args.items, args.seed, args.sessions)
    result = {"command": "python -m streaming.arith.evaluate " + " ".join(argv or []), **result}
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
