"""Small read-only records for what every run imports (wire messages, syscall table rows).

Not dataclasses: generating a frozen dataclass's methods costs ~0.5-1.5 ms per class at
import (timed on this 2-vCPU machine, `-X importtime`), paid by every cold `bubble run`; a
record here costs ~15 µs. Fields are the class's `__slots__`; records compare, hash and print
by them, and cannot be changed once made.
"""

from __future__ import annotations


class Record:
    __slots__: tuple[str, ...] = ()

    def _set(self, **fields: object) -> None:
        """Set every field once, in `__init__` (each by name: `__slots__` is kept sorted)."""
        if set(fields) != set(self.__slots__):
            raise TypeError(f"{type(self).__name__} has the fields {self.__slots__}")
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Record)
            and type(other) is type(self)
            and (self._values() == other._values())
        )

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
