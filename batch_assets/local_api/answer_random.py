"""The deterministic generator answers draw from: cheap to seed, the same draws for a seed.

Words come eight at a time from blake2b(seed bytes + block number); a draw below `n` is the
top of the product `word * n` (bias below n / 2**64). It offers the parts of `random.Random`
the answer builders use; seeding costs one hash, not Mersenne Twister's 624-word setup.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import MutableSequence, Sequence
from typing import TypeVar

T = TypeVar("T")

_WORDS_PER_BLOCK = 8
_BLOCK = struct.Struct("<8Q")
_WORD_BITS = 64
_DOUBLE_SCALE = 2.0**-53


def seed_bytes(seed: int) -> bytes:
    """The bytes a seed is known by (any int, negative and past 64 bits too)."""
    return seed.to_bytes((seed.bit_length() + 8) // 8, "little", signed=True)


class AnswerRandom:
    """A stream of 64-bit words fixed by a seed, with `random.Random`'s draws on top."""

    __slots__ = ("_at", "_block", "_key", "_words")

    def __init__(self, seed: int) -> None:
        """Start the stream of `seed`; nothing is hashed until the first draw."""
        self._key = seed_bytes(seed) + b"/"
        self._block = 0
        self._words: tuple[int, ...] = ()
        self._at = _WORDS_PER_BLOCK

    def word(self) -> int:
        """The next 64-bit word of the stream."""
        at = self._at
        if at >= _WORDS_PER_BLOCK:
            block = hashlib.blake2b(self._key + self._block.to_bytes(8, "little")).digest()
            self._words = _BLOCK.unpack(block)
            self._block += 1
            at = 0
        self._at = at + 1
        return self._words[at]

    def below(self, n: int) -> int:
        """A number in [0, n) for n >= 1."""
        if n <= 1 << _WORD_BITS:
            return (self.word() * n) >> _WORD_BITS
        bits = n.bit_length() + _WORD_BITS
        return (self.getrandbits(bits) * n) >> bits

    def getrandbits(self, k: int) -> int:
        """A number of `k` random bits."""
        if k <= _WORD_BITS:
            return self.word() >> (_WORD_BITS - k)
        value, have = 0, 0
        while have < k:
            value = (value << _WORD_BITS) | self.word()
            have += _WORD_BITS
        return value >> (have - k)

    def random(self) -> float:
        """A float in [0, 1)."""
        return (self.word() >> 11) * _DOUBLE_SCALE

    def choice(self, seq: Sequence[T]) -> T:
        """One item of a non-empty sequence."""
        if not seq:
            raise IndexError("Cannot choose from an empty sequence")
        return seq[self.below(len(seq))]

    def randint(self, a: int, b: int) -> int:
        """A number in [a, b]."""
        if b < a:
            raise ValueError(f"empty range in randint({a}, {b})")
        return a + self.below(b - a + 1)

    def randrange(self, start: int, stop: int | None = None) -> int:
        """A number in [start, stop), or in [0, start) when `stop` is None."""
        low, high = (0, start) if stop is None else (start, stop)
        if high <= low:
            raise ValueError(f"empty range in randrange({start}, {stop})")
        return low + self.below(high - low)

    def uniform(self, a: float, b: float) -> float:
        """A float between a and b."""
        return a + (b - a) * self.random()

    def shuffle(self, x: MutableSequence[object]) -> None:
        """Shuffle a list in place (Fisher-Yates, from the end)."""
        for i in range(len(x) - 1, 0, -1):
            j = self.below(i + 1)
            x[i], x[j] = x[j], x[i]
