"""The helper process answers calls in order over its pipes; a reply not wanted is dropped, what
the work raises is raised to the caller, and a dead or hung helper fails its calls."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from batch_assets.local_api.helper_process import HelperFailed, HelperProcess


def echo(value: object) -> object:
    return value


def fail(message: str) -> None:
    raise ValueError(message)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


@pytest.fixture
def helper() -> Iterator[HelperProcess]:
    started = HelperProcess()
    deadline = time.monotonic() + 60
    while not started.ready():
        assert time.monotonic() < deadline, "the helper did not warm up"
        time.sleep(0.01)
    yield started
    started.close()


def test_replies_are_matched_to_their_calls_whatever_order_they_are_read_in(
    helper: HelperProcess,
) -> None:
    calls = [helper.submit(echo, number) for number in range(5)]
    assert all(call is not None for call in calls)
    assert [calls[index].result(30) for index in (3, 0, 4, 1, 2)] == [3, 0, 4, 1, 2]  # type: ignore[union-attr]


def test_a_discarded_reply_is_dropped_and_the_next_calls_still_match(
    helper: HelperProcess,
) -> None:
    first, second, third = (helper.submit(echo, value) for value in ("a", "b", "c"))
    assert first is not None and second is not None and third is not None
    second.discard()
    assert third.result(30) == "c"
    assert first.result(30) == "a"
    assert helper._received == {} and helper._abandoned == set()


def test_what_the_work_raises_is_raised_by_result_and_the_helper_goes_on(
    helper: HelperProcess,
) -> None:
    failing = helper.submit(fail, "line 3 is not JSON")
    assert failing is not None
    with pytest.raises(ValueError, match="line 3 is not JSON"):
        failing.result(30)
    after = helper.submit(echo, 7)
    assert after is not None and after.result(30) == 7


def test_a_helper_that_dies_fails_its_calls_and_takes_no_more(helper: HelperProcess) -> None:
    pending = helper.submit(sleep, 30)
    assert pending is not None and helper._process is not None
    os.kill(helper._process.pid, signal.SIGKILL)
    with pytest.raises(HelperFailed):
        pending.result(30)
    assert helper.submit(echo, 1) is None
    assert not helper.ready()


def test_a_helper_that_does_not_answer_in_time_is_stopped(helper: HelperProcess) -> None:
    pending = helper.submit(sleep, 30)
    assert pending is not None and helper._process is not None
    process = helper._process
    with pytest.raises(HelperFailed, match=r"did not answer within 0\.2s"):
        pending.result(0.2)
    assert not process.is_alive()
    assert helper.submit(echo, 1) is None
