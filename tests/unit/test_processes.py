"""run_apart: the answer of a spawned child comes back, and a child that dies without answering is reported
at once instead of leaving the caller waiting (the planner once hung on a calibration killed for memory)."""

from __future__ import annotations

import os
import time

import pytest

from tunesmith.processes import ChildDied, run_apart


def answer_twice(value: int, queue) -> None:
    queue.put({"value": 2 * value, "pid": os.getpid()})


def die_silently(code: int, queue) -> None:
    os._exit(code)


def test_the_answer_comes_back_from_another_process():
    answer = run_apart(answer_twice, 21)
    assert answer["value"] == 42 and answer["pid"] != os.getpid()


def test_a_child_that_dies_without_answering_is_reported_not_waited_for():
    started = time.monotonic()
    with pytest.raises(ChildDied) as caught:
        run_apart(die_silently, 9, poll_seconds=0.2)
    assert caught.value.exitcode == 9 and time.monotonic() - started < 30
