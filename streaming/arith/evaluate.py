"""Held-out accuracy of the embedded model: `python -m streaming.arith.evaluate [--model DIR]`.

Questions of the `eval` split (held-out voices, held-out phrasings, or both; never seen in
training) are synthesised afresh, go through the serving front end (`log_mel`) and the
checkpoint as `load_checkpoint` loads it, and are answered by greedy decoding in each mode:
`think` (full reasoning, then the answer) and `no_think` (`<think>\\n\\n</think>` given). A reply
is right when the number its answer sentence states equals the true result. Prints a table and
writes `benchmarks/results/arith_eval.json` (with every wrong reply, for the confusions).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from streaming.arith.batching import greedy_generate
from streaming.arith.data import Utterance, answer_number, make_utterance, speak
from streaming.arith.examples import SequenceBuilder, Turn
from streaming.arith.melcache import MelCache
from streaming.model.frontend import log_mel
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.model.tokens import THINK_END

RESULTS_FILE = Path("benchmarks/results/arith_eval.json")
EVAL_MODES = ("think", "no_think")
EVAL_SEED = 1000  # other problems, voices and noise than the in-training monitor (seed 0)
BATCH = 32
MAX_NEW_TOKENS = 64
KINDS = {
    (True, False): "held-out voice",
    (False, True): "held-out phrasing",
    (True, True): "both held out",
    (False, False): "training voice and phrasing",
}


@dataclass(frozen=True)
class Reply:
    utterance: Utterance
    mode: str
    text: str  # everything the model wrote (reasoning, </think>, answer)
    answer: str
    number: int | None

    @property
    def correct(self) -> bool:
        return self.number == self.utterance.problem.result

    @property
    def heard(self) -> bool:
        """The reasoning names the question right (think mode): listening, not arithmetic."""
        return f"I hear: {self.utterance.problem.heard}." in self.text

    @property
    def kind(self) -> str:
        u = self.utterance
        return KINDS[(u.held_out_voice, u.held_out_phrasing)]


def split_reply(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a generated reply; with no `</think>`, all of it is reasoning."""
    reasoning, found, answer = text.partition(THINK_END)
    return (reasoning.strip(), answer.strip()) if found else (text.strip(), "")


def answer_replies(
    model: StepAudio2ForCausalLM,
    builder: SequenceBuilder,
    utterances: Sequence[Utterance],
    mels: Sequence[torch.Tensor],
    mode: str,
) -> list[Reply]:
    """Greedy replies to spoken questions (`mels` from `log_mel`) in one mode."""
    replies = []
    tokenizer = builder.prompts.tokenizer
    for start in range(0, len(utterances), BATCH):
        batch = range(start, min(start + BATCH, len(utterances)))
        turns = [Turn(clip=i, mel_frames=mels[i].shape[-1], reasoning="", answer="") for i in batch]
        prompts = [builder.prompt_ids(turn, mode=mode)[0] for turn in turns]
        outputs = greedy_generate(
            model,
            prompts,
            [mels[i] for i in batch],
            builder.special.audio_patch,
            builder.special.stop_ids,
            MAX_NEW_TOKENS,
        )
        for i, ids in zip(batch, outputs, strict=True):
            text = tokenizer.decode(ids, skip_special_tokens=False)
            answer = split_reply(text)[1] if mode == "think" else text.strip()
            replies.append(Reply(utterances[i], mode, text, answer, answer_number(answer)))
    return replies


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
    often the reasoning heard the question right (`heard_think`)."""
    report: dict[str, float] = {}
    groups: dict[str, list[Reply]] = {}
    for reply in replies:
        groups.setdefault(f"acc_{reply.mode}", []).append(reply)
        groups.setdefault(f"acc_{reply.mode}/{reply.kind}", []).append(reply)
    for name, group in sorted(groups.items()):
        report[name] = round(sum(r.correct for r in group) / len(group), 4)
    think = [r for r in replies if r.mode == "think"]
    if think:
        report["heard_think"] = round(sum(r.heard for r in think) / len(think), 4)
    return report


def evaluate_checkpoint(path: Path | None, items: int, seed: int = EVAL_SEED) -> dict:
    from streaming.arith.examples import SequenceBuilder
    from streaming.default_model import default_checkpoint
    from streaming.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(path or default_checkpoint(), dtype=torch.float32)
    builder = SequenceBuilder(loaded.tokenizer, loaded.special)
    utterances = [make_utterance("eval", i, seed) for i in range(items)]
    mels = [log_mel(speak(u, seed)) for u in utterances]
    replies = [
        r
        for mode in EVAL_MODES
        for r in answer_replies(loaded.model, builder, utterances, mels, mode)
    ]
    # Named, not located: the report is committed, and paths differ between machines.
    name = "embedded default" if path is None else loaded.path.name
    return {
        "checkpoint": name,
        "items": items,
        "seed": seed,
        "accuracy": accuracy_report(replies),
        "wrong": [_wrong(r) for r in replies if not r.correct],
    }


def _wrong(reply: Reply) -> dict:
    u = reply.utterance
    return {
        "mode": reply.mode,
        "said": u.text,
        "voice": u.voice,
        "rate_wpm": u.rate_wpm,
        "pitch": u.pitch,
        "expected": u.problem.result,
        "reply": reply.text,
        "kind": reply.kind,
    }


def print_table(result: dict) -> None:
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
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    result = evaluate_checkpoint(args.model, args.items, args.seed)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
