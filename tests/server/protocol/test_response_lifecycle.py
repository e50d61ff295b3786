"""The response lifecycle's table (server/protocol/response.py): every move it allows, and
that every other move is refused as a bug, whatever state the slot is in."""

from __future__ import annotations

import itertools

import pytest

from server.protocol.config import SessionConfig, response_options
from server.protocol.response import (
    TRANSITIONS,
    ActiveResponse,
    Move,
    ResponseSlot,
    ResponseState,
    ResponseStateError,
)
from streaming.responder import AnswerDelta, ReasoningDelta

BEGINS = (Move.SPECULATE, Move.START)  # the moves that bring a response


def _response() -> ActiveResponse:
    return ActiveResponse.new(response_options(SessionConfig(), None, ["alloy"]))


def _slot_in(state: ResponseState) -> ResponseSlot:
    slot = ResponseSlot()
    if state is not ResponseState.IDLE:
        slot.move(Move.SPECULATE if state is ResponseState.SPECULATIVE else Move.START, _response())
    return slot


@pytest.mark.parametrize(("state", "move"), sorted(TRANSITIONS, key=str))
def test_allowed_moves_reach_their_state(state: ResponseState, move: Move) -> None:
    slot = _slot_in(state)
    before = slot.response
    slot.move(move, _response() if move in BEGINS else None)
    assert slot.state is TRANSITIONS[(state, move)]
    if slot.state is ResponseState.IDLE:
        assert slot.response is None and slot.active is None and slot.speculative is None
    elif move is Move.CONFIRM:
        assert slot.active is before  # the speculated response is the one that goes on


@pytest.mark.parametrize(
    ("state", "move"),
    [key for key in itertools.product(ResponseState, Move) if key not in TRANSITIONS],
)
def test_every_other_move_is_refused_and_changes_nothing(state: ResponseState, move: Move) -> None:
    slot = _slot_in(state)
    before = (slot.state, slot.response)
    with pytest.raises(ResponseStateError):
        slot.move(move, _response() if move in BEGINS else None)
    assert (slot.state, slot.response) == before


def test_only_the_beginning_moves_bring_a_response() -> None:
    with pytest.raises(ResponseStateError):
        ResponseSlot().move(Move.START)
    slot = _slot_in(ResponseState.SPECULATIVE)
    with pytest.raises(ResponseStateError):
        slot.move(Move.CONFIRM, _response())


def test_held_events_come_back_once_on_confirm_and_go_on_discard() -> None:
    slot = _slot_in(ResponseState.SPECULATIVE)
    held = [ReasoningDelta("3 + 4", tokens=3), AnswerDelta("seven", tokens=1)]
    slot.held.extend(held)
    assert slot.move(Move.CONFIRM) == held
    assert slot.held == []
    slot.move(Move.END)
    slot.move(Move.SPECULATE, _response())
    slot.held.append(AnswerDelta("x", tokens=1))
    slot.move(Move.DISCARD)
    assert slot.held == [] and slot.state is ResponseState.IDLE
