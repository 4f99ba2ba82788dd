"""What kind of JSON value a thing is, as the checks and error messages tell it."""

# How OpenAI's error messages name each JSON type ("expected ..., but got an integer instead").
_NAMED = {
    "null": "null",
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a decimal",
    "string": "a string",
    "array": "an array",
    "object": "an object",
}


def is_int(value: object) -> bool:
    """Tell whether a JSON value is an integer (bools are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Tell whether a JSON value is a number (bools are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_type(value: object) -> str:
    """The JSON Schema type of a Python value ("integer" for whole ints only)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def describe(value: object) -> str:
    """Name a JSON value's type the way OpenAI error messages do."""
    return _NAMED[json_type(value)]
