"""The deploy queue's domain: the table of moves, exhaustively, and the lane functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.errors import DomainError
from bot.domain.queue import (
    TRANSITIONS,
    QueueEntry,
    QueueMove,
    QueueState,
    call_next,
    check_join,
    check_turn,
    lapse,
    leave,
    move,
    position,
    take,
    turn_holder,
)

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TURN = timedelta(minutes=15)

EXPECTED = {
    (QueueState.WAITING, QueueMove.CALL): QueueState.CALLED,
    (QueueState.WAITING, QueueMove.TAKE): QueueState.TAKEN,
    (QueueState.WAITING, QueueMove.LEAVE): QueueState.LEFT,
    (QueueState.CALLED, QueueMove.TAKE): QueueState.TAKEN,
    (QueueState.CALLED, QueueMove.LEAVE): QueueState.LEFT,
    (QueueState.CALLED, QueueMove.LAPSE): QueueState.LAPSED,
}


def entry(n: int, user: str, state: QueueState = QueueState.WAITING, **kw: object) -> QueueEntry:
    return QueueEntry(n, "prod", "api", user, T0 + timedelta(minutes=n), state, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("state", list(QueueState))
@pytest.mark.parametrize("what", list(QueueMove))
def test_every_move_from_every_state(state: QueueState, what: QueueMove) -> None:
    before = entry(1, "U1", state)
    target = EXPECTED.get((state, what))
    if target is None:
        with pytest.raises(DomainError):
            move(before, what, T0, TURN)
        return
    after = move(before, what, T0, TURN)
    assert after.state is target
    if what is QueueMove.CALL:
        assert (after.called_at, after.turn_until) == (T0, T0 + TURN)
    assert TRANSITIONS == EXPECTED


def test_the_first_who_joined_is_called_and_only_one_holds_the_turn() -> None:
    lane = [entry(2, "U2"), entry(1, "U1"), entry(3, "U3", QueueState.LEFT)]
    called = call_next(lane, T0, TURN)
    assert called is not None and called.user_id == "U1" and called.state is QueueState.CALLED
    assert call_next([called, lane[0]], T0, TURN) is None  # U1 holds the turn
    assert call_next([], T0, TURN) is None
    assert [position(lane, u) for u in ("U1", "U2", "U3")] == [1, 2, None]


@pytest.mark.parametrize(
    ("at", "lapsed"),
    [(T0 + TURN - timedelta(seconds=1), False), (T0 + TURN, True), (T0 + 2 * TURN, True)],
)
def test_a_turn_lapses_at_its_end_and_the_next_is_called(at: datetime, lapsed: bool) -> None:
    first = move(entry(1, "U1"), QueueMove.CALL, T0, TURN)
    lane = [first, entry(2, "U2")]
    changed = lapse(lane, 1, at, TURN)
    if not lapsed:
        assert changed == []
        return
    assert [(c.user_id, c.state) for c in changed] == [
        ("U1", QueueState.LAPSED),
        ("U2", QueueState.CALLED),
    ]
    assert changed[1].turn_until == at + TURN


def test_a_taken_or_left_turn_does_not_lapse() -> None:
    for state in (QueueState.TAKEN, QueueState.LEFT, QueueState.WAITING):
        assert lapse([entry(1, "U1", state), entry(2, "U2")], 1, T0 + TURN, TURN) == []
    assert lapse([entry(2, "U2")], 1, T0 + TURN, TURN) == []  # unknown entry


@pytest.mark.parametrize(
    ("user", "at", "refused"),
    [
        ("U1", T0, False),  # their turn
        ("U2", T0, True),  # someone else's turn
        ("U2", T0 + TURN, False),  # the turn is over: first come
        ("U9", T0 + TURN - timedelta(seconds=1), True),
    ],
)
def test_whose_turn_it_is_decides_who_may_start(user: str, at: datetime, refused: bool) -> None:
    lane = [move(entry(1, "U1"), QueueMove.CALL, T0, TURN), entry(2, "U2")]
    assert turn_holder(lane, T0) == lane[0]
    if refused:
        with pytest.raises(DomainError, match=r"<@U1>'s turn to deploy prod api .* until 10:15"):
            check_turn(lane, user, at)
    else:
        check_turn(lane, user, at)


def test_join_take_and_leave() -> None:
    lane = [entry(1, "U1"), move(entry(2, "U2"), QueueMove.CALL, T0, TURN)]
    with pytest.raises(DomainError, match=r"already in the queue for prod api .number 2"):
        check_join(lane, "U2", "prod api")
    check_join(lane, "U3", "prod api")
    taken = take(lane, "U2", T0)
    assert taken is not None and taken.state is QueueState.TAKEN
    assert take(lane, "U3", T0) is None
    assert leave(lane, "U1", T0).state is QueueState.LEFT
    with pytest.raises(DomainError, match="not in that queue"):
        leave(lane, "U3", T0)
