"""Long lists read one item at a time: a province's red and yellow projects, a sheet's rows.

``Mapped`` makes each item of a sequence into something else only when it is read, so a digest's
lists and its workbook's rows go out without all being held at once; ``FrameRows`` reads a polars
frame's rows as dicts the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

import polars as pl

S = TypeVar("S")
T = TypeVar("T")


class Mapped(Sequence[T], Generic[S, T]):
    """``items``, each made an item by ``make`` as it is read (slices stay lazy)."""

    def __init__(self, items: Sequence[S], make: Callable[[S], T]):
        self.items, self.make = items, make

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Mapped[S, T]: ...

    def __getitem__(self, index: int | slice) -> T | Mapped[S, T]:
        if isinstance(index, slice):
            return Mapped(self.items[index], self.make)
        return self.make(self.items[index])

    def __iter__(self) -> Iterator[T]:
        return map(self.make, self.items)


class FrameRows(Sequence[dict[str, Any]]):
    """A frame's rows as dicts (column → value), each made when it is read."""

    def __init__(self, frame: pl.DataFrame):
        self.frame = frame

    def __len__(self) -> int:
        return self.frame.height

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> FrameRows: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | FrameRows:
        if isinstance(index, slice):
            return FrameRows(self.frame[index])
        return self.frame.row(index, named=True)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.frame.iter_rows(named=True)


__all__ = ["FrameRows", "Mapped"]
