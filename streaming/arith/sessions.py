"""Random training sessions drawn from the trainer's clips: what a served conversation holds.

A session has, each with its probability: a system prompt (a framework's default or a persona
of several sentences), declared tools (with or without `calculate`, beside unrelated ones), up
to `MAX_HISTORY_TURNS` earlier exchanges (mostly spoken questions and their answers; some typed,
some declined, some tool calls with their outputs when `calculate` is declared), and a live turn:
a question, something to decline, or, after a call, the tool's output to speak. Every draw comes
from the generator it is given: a step's sessions are a function of the seed and the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from streaming.arith import context
from streaming.arith.data import QUESTION
from streaming.arith.examples import (
    MAX_HISTORY_TURNS,
    MODES,
    Exchange,
    Session,
    ToolUse,
    Turn,
    target_of,
    tool_call_for,
)

SYSTEM_PROBABILITY = 0.5
TOOLS_PROBABILITY = 0.35
CALCULATE_PROBABILITY = 0.75  # of sessions with tools
NO_HISTORY_PROBABILITY = 0.25  # single questions, the core task; else 1..MAX_HISTORY_TURNS
TYPED_PROBABILITY = 0.2  # a turn typed instead of spoken (questions and off-task sentences)
HISTORY_DECLINED_PROBABILITY = 0.1
LIVE_DECLINED_PROBABILITY = 0.25  # the default; the trainer's recipe may set its own
# In a session with `calculate`, most questions went through the tool (it may have been
# declared only after some turns).
TOOL_USE_PROBABILITY = 0.9
LIVE_RESULT_PROBABILITY = 0.6  # of live questions with `calculate`: the call is made already
TYPED_RESULT_PROBABILITY = 0.3  # of typed single questions: the answer after a call
DECLINED_WEIGHTS = {"offtask": 0.4, "truncated": 0.2, "fragment": 0.12, "silence": 0.14}
DECLINED_WEIGHTS["noise"] = 1.0 - sum(DECLINED_WEIGHTS.values())
MODE_WEIGHTS = (0.5, 0.3, 0.2)  # think, partial, no_think (the live turn)
TYPED_KINDS = (QUESTION, "offtask")  # kinds that can be typed


@dataclass
class ClipPool:
    """The trainer's spoken turns by kind (clip ids index its mel caches, concatenated)."""

    turns: dict[str, list[Turn]]

    def draw(self, kind: str, rng: np.random.Generator) -> Turn:
        pool = self.turns[kind]
        return pool[rng.integers(len(pool))]


class SessionSampler:
    def __init__(
        self,
        pool: ClipPool,
        count_tokens: Callable[[str], int],
        held_out: bool = False,
        live_declined: float = LIVE_DECLINED_PROBABILITY,
    ) -> None:
        self.pool = pool
        self.live_declined = live_declined  # of live turns: a clip to decline
        self.count_tokens = count_tokens  # the tokenizer's length of a text
        self.held_out = held_out  # held-out system prompts, tools and outputs (evaluation)
        kinds = list(DECLINED_WEIGHTS)
        self._declined = (kinds, np.array([DECLINED_WEIGHTS[k] for k in kinds]))

    def session(self, rng: np.random.Generator) -> Session:
        system = (
            context.system_prompt(self.held_out, rng) if rng.random() < SYSTEM_PROBABILITY else None
        )
        tools: list[dict] = []
        if rng.random() < TOOLS_PROBABILITY:
            tools = context.tools(self.held_out, rng.random() < CALCULATE_PROBABILITY, rng)
        with_tool = context.declares_calculate(tools)
        turns = (
            0
            if rng.random() < NO_HISTORY_PROBABILITY
            else int(rng.integers(1, MAX_HISTORY_TURNS + 1))
        )
        history = tuple(self._exchange(with_tool, rng) for _ in range(turns))
        live = self._turn(rng.random() < self.live_declined, rng)
        live_tool = None
        if with_tool and not live.utterance.declined and rng.random() < LIVE_RESULT_PROBABILITY:
            live_tool = self._tool_use(live, rng)
        mode = MODES[rng.choice(len(MODES), p=MODE_WEIGHTS)]
        return self._with_cut(Session(live, history, system, tuple(tools), live_tool, mode), rng)

    def typed_session(self, rng: np.random.Generator) -> Session:
        """A typed question alone (no encoder: cheap), in a random mode: it teaches the decoder
        the arithmetic and the answers' wording; some come back from a `calculate` call, so
        that reading a tool's output is taught as often."""
        live = self.pool.draw(QUESTION, rng).typed()
        tools: tuple[dict, ...] = ()
        live_tool = None
        if rng.random() < TYPED_RESULT_PROBABILITY:
            tools = tuple(context.tools(self.held_out, True, rng))
            live_tool = self._tool_use(live, rng)
        mode = MODES[rng.choice(len(MODES), p=MODE_WEIGHTS)]
        return self._with_cut(Session(live, tools=tools, live_tool=live_tool, mode=mode), rng)

    def _with_cut(self, session: Session, rng: np.random.Generator) -> Session:
        if session.mode != "partial":
            return session
        # a random number of the reasoning's tokens is kept
        length = self.count_tokens(target_of(session).reasoning)
        return replace(session, cut=int(rng.integers(0, length + 1)))

    def transcription_turn(self, rng: np.random.Generator) -> Turn:
        """A clip to transcribe: mostly questions, some silence and noise (an empty
        transcript)."""
        roll = rng.random()
        kind = QUESTION if roll < 0.85 else ("silence" if roll < 0.93 else "noise")
        return self.pool.draw(kind, rng)

    def _turn(self, declined: bool, rng: np.random.Generator) -> Turn:
        kinds, weights = self._declined
        kind = kinds[rng.choice(len(kinds), p=weights)] if declined else QUESTION
        turn = self.pool.draw(kind, rng)
        if kind in TYPED_KINDS and rng.random() < TYPED_PROBABILITY:
            return turn.typed()
        return turn

    def _exchange(self, with_tool: bool, rng: np.random.Generator) -> Exchange:
        turn = self._turn(rng.random() < HISTORY_DECLINED_PROBABILITY, rng)
        utterance = turn.utterance
        if with_tool and not utterance.declined and rng.random() < TOOL_USE_PROBABILITY:
            tool = self._tool_use(turn, rng)
            return Exchange(turn, target_of(Session(turn, live_tool=tool)).answer, tool)
        return Exchange(turn, utterance.answer)

    def _tool_use(self, turn: Turn, rng: np.random.Generator) -> ToolUse:
        problem = turn.utterance.question
        value = context.returned_value(problem.result, rng)
        output = context.tool_output(value, self.held_out, rng)
        return ToolUse(tool_call_for(turn.utterance).arguments, output)
