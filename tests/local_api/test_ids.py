"""Object ids have OpenAI's shapes and never repeat."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import partial

import pytest

from batch_assets.local_api import ids

SHAPES: list[tuple[Callable[[], str], str]] = [
    (ids.file_id, r"file-[A-Za-z0-9]{22}"),
    (ids.batch_id, r"batch_[0-9a-f]{32}"),
    (ids.batch_request_id, r"batch_req_[0-9a-f]{32}"),
    (ids.request_id, r"req_[0-9a-f]{32}"),
    (ids.chat_completion_id, r"chatcmpl-[A-Za-z0-9]{29}"),
    (ids.completion_id, r"cmpl-[A-Za-z0-9]{29}"),
    (ids.tool_call_id, r"call_[A-Za-z0-9]{24}"),
    (ids.response_id, r"resp_[0-9a-f]{48}"),
    (partial(ids.response_item_id, "msg"), r"msg_[0-9a-f]{48}"),
    (partial(ids.response_item_id, "fc"), r"fc_[0-9a-f]{48}"),
    (ids.moderation_id, r"modr-[0-9a-f]{32}"),
]


@pytest.mark.parametrize(("make", "shape"), SHAPES)
def test_ids_have_the_shape_and_never_repeat(make: Callable[[], str], shape: str) -> None:
    drawn = [make() for _ in range(5000)]
    assert all(re.fullmatch(shape, object_id) for object_id in drawn)
    assert len(set(drawn)) == len(drawn)


def test_every_base62_digit_is_drawn_in_every_place() -> None:
    drawn = [ids.chat_completion_id().removeprefix("chatcmpl-") for _ in range(5000)]
    for place in range(29):
        assert len({object_id[place] for object_id in drawn}) == 62


def test_ids_drawn_across_several_random_blocks_never_repeat() -> None:
    drawn = [ids.batch_request_id() for _ in range(20_000)]  # 320,000 bytes: several blocks
    assert len(set(drawn)) == len(drawn)


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    ids.request_id()  # the parent holds a block it has not used up
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: write the ids it draws and leave at once
        os.close(read_end)
        os.write(write_end, " ".join(ids.request_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        theirs = set(pipe.read().decode().split())
    os.waitpid(child, 0)
    ours = {ids.request_id() for _ in range(50)}
    assert len(theirs) == 50
    assert not theirs & ours
