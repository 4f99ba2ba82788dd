"""The checks `build_batch_pipeline` makes of its arguments, each a ValueError naming the
argument; the YAML component makes the same ones, so that its errors name the line."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Literal

from batch_assets.pipeline.keys import MAX_BATCH_METADATA_KEYS, RESERVED_METADATA_KEYS, TAG_PREFIX

MAX_USER_KINDS = 1  # Dagster shows three kinds per asset; the pipeline's assets take up to two
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_NAMES = frozenset({"request_cache", "io_manager"})  # folders beside the pipelines' own


def check_name(name: str, *, setting: str = "pipeline name") -> str:
    """A pipeline (or cache) name: snake_case, as it prefixes every asset, job and schedule."""
    if not _NAME.match(name):
        raise ValueError(
            f"{setting} {name!r} must be snake_case: lowercase letters, digits and "
            "underscores, starting with a letter"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"{setting} {name!r} is the name of a folder the pipelines share")
    return name


def check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Batch metadata that fits beside the keys the pipeline sets."""
    room = MAX_BATCH_METADATA_KEYS - RESERVED_METADATA_KEYS
    if len(metadata) > room:
        raise ValueError(
            f"metadata has {len(metadata)} keys; the Batch API allows "
            f"{MAX_BATCH_METADATA_KEYS} and the pipeline uses {RESERVED_METADATA_KEYS}, so at "
            f"most {room}"
        )
    return dict(metadata)


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Asset tags that leave the pipeline's own alone."""
    reserved = sorted(key for key in tags if key.startswith(TAG_PREFIX))
    if reserved:
        raise ValueError(f"tags {reserved} are the pipeline's own (prefix {TAG_PREFIX!r})")
    return dict(tags)


def check_kinds(kinds: Collection[str]) -> frozenset[str]:
    """Kinds that fit beside the pipeline's own on every asset."""
    unique = frozenset(kinds)
    if len(unique) > MAX_USER_KINDS:
        raise ValueError(
            f"kinds has {len(unique)} entries; Dagster shows at most 3 kinds on an asset and "
            f"the pipeline's assets use up to 2, so give at most {MAX_USER_KINDS}"
        )
    return unique


def check_max_attempts(max_attempts: int) -> int:
    """How many times a request may be submitted: at least once."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    return max_attempts


def check_error_rate(max_error_rate: float) -> float:
    """The error-rate check's threshold: a fraction."""
    if not 0 <= max_error_rate <= 1:
        raise ValueError(f"max_error_rate must be between 0 and 1, got {max_error_rate}")
    return max_error_rate


CacheMode = Literal["reuse", "refresh", "off"]
CACHE_MODES: tuple[CacheMode, ...] = ("reuse", "refresh", "off")
SupersededAction = Literal["cancel", "keep"]
SUPERSEDED_ACTIONS: tuple[SupersededAction, ...] = ("cancel", "keep")


def check_cache_mode(cache: str) -> CacheMode:
    """`reuse` answers from the cache, `refresh` only stores answers, `off` neither."""
    for mode in CACHE_MODES:
        if cache == mode:
            return mode
    raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}; got {cache!r}")


def check_cache_max_age(max_age: timedelta | None) -> timedelta | None:
    """How old a cached answer may be: positive, or None for any age."""
    if max_age is not None and max_age <= timedelta(0):
        raise ValueError(f"cache_max_age must be positive, got {max_age}")
    return max_age


def check_on_superseded(action: str) -> SupersededAction:
    """What happens to a running submission that a newer one replaces."""
    for choice in SUPERSEDED_ACTIONS:
        if action == choice:
            return choice
    raise ValueError(
        f"on_superseded must be one of {', '.join(SUPERSEDED_ACTIONS)}; got {action!r}"
    )


def check_max_cost(max_cost_usd: float | None) -> float | None:
    """The budget of one submission in US dollars: positive, or None for no limit."""
    if max_cost_usd is not None and not max_cost_usd > 0:
        raise ValueError(f"max_cost_usd must be a positive number of dollars, got {max_cost_usd}")
    return max_cost_usd
