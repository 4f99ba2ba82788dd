"""What kind of JSON value a thing is, as the checks and error messages tell it."""


def is_int(value: object) -> bool:
    """Tell whether a JSON value is an integer (bools are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Tell whether a JSON value is a number (bools are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe(value: object) -> str:
    """Name a JSON value's type the way OpenAI error messages do."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
