"""The `{anchor, seconds}` expiry settings: a file's `expires_after`, a batch's
`output_expires_after`."""

from __future__ import annotations

from dataclasses import dataclass

from batch_assets.local_api.errors import APIError
from batch_assets.local_api.json_values import is_int

MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS = 3600, 2592000  # one hour to thirty days


@dataclass(frozen=True)
class ExpirySetting:
    """How one endpoint names an expiry setting's two fields, and its words for a wrong anchor."""

    anchor_param: str
    seconds_param: str
    wrong_anchor: str


FILE_EXPIRES_AFTER = ExpirySetting(
    anchor_param="expires_after[anchor]",
    seconds_param="expires_after[seconds]",
    wrong_anchor="Invalid 'expires_after[anchor]': the only supported anchor is 'created_at'.",
)
BATCH_OUTPUT_EXPIRES_AFTER = ExpirySetting(
    anchor_param="output_expires_after.anchor",
    seconds_param="output_expires_after.seconds",
    wrong_anchor="Invalid 'output_expires_after': 'anchor' must be 'created_at'.",
)


def expiry_seconds(anchor: object, seconds: object, setting: ExpirySetting) -> int:
    """The seconds after creation that an expiry setting asks for, or a 400 naming the field."""
    if anchor != "created_at":
        raise APIError(400, setting.wrong_anchor, param=setting.anchor_param)
    if not is_int(seconds):
        raise APIError(
            400,
            f"Invalid '{setting.seconds_param}': expected an integer.",
            param=setting.seconds_param,
        )
    if not MIN_EXPIRY_SECONDS <= seconds <= MAX_EXPIRY_SECONDS:
        raise APIError(
            400,
            f"Invalid '{setting.seconds_param}': {seconds} is out of range; expected "
            f"{MIN_EXPIRY_SECONDS} to {MAX_EXPIRY_SECONDS}.",
            param=setting.seconds_param,
        )
    return seconds


def form_integer(text: str | None) -> int | str | None:
    """A multipart form field read as an integer when `int()` reads it; else as it came."""
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text
