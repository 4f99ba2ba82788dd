"""The errors a local model answers with, and the builders of the common ones."""

from batch_assets.local_api.errors import APIError
from batch_assets.local_api.json_values import describe


class RequestRejected(APIError):
    """A request body the endpoint refuses (answered as HTTP 400 with the error envelope)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int = 400,
        type: str = "invalid_request_error",
    ) -> None:
        """Keep the four envelope fields and the HTTP status."""
        super().__init__(status_code, message, type=type, param=param, code=code)


class AnswerTimedOut(RequestRejected):
    """The answer was not built by its deadline (answered as HTTP 504)."""

    def __init__(self) -> None:
        """Say that the local model ran out of time."""
        super().__init__(
            "The local model did not answer within its time limit; the request timed out.",
            code="timeout",
            status_code=504,
            type="server_error",
        )


def missing_parameter(param: str) -> RequestRejected:
    """Build the missing_required_parameter rejection."""
    return RequestRejected(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def wrong_type(param: str, expected: str, value: object) -> RequestRejected:
    """Build the invalid_type rejection."""
    return RequestRejected(
        f"Invalid type for '{param}': expected {expected}, but got {describe(value)} instead.",
        param=param,
        code="invalid_type",
    )


def bad_value(param: str, value: object, supported: tuple[str, ...]) -> RequestRejected:
    """Build the invalid_value rejection listing the supported values."""
    quoted = [f"'{s}'" for s in supported]
    listing = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    return RequestRejected(
        f"Invalid value: '{value}'. Supported values are: {listing}.",
        param=param,
        code="invalid_value",
    )
