"""Long lists read one item at a time: a province's red and yellow projects, a sheet's rows.

``Mapped`` makes each item of a sequence into something else only when it is read, so a digest's
lists and its workbook's rows go out without all being held at once; ``FrameRows`` reads a polars
frame's rows as dicts the same way, and ``Listing`` lists a frame's rows in an order of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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


ROWS_PER_BLOCK = 2_000  # rows copied out of a frame at a time when read in an order of their own


class FrameRows(Sequence[dict[str, Any]]):
    """A frame's rows as dicts (column → value), each made when it is read: all of them in the
    frame's order, or those at the positions ``order`` gives, in that order (a sorted list read
    without a sorted copy of its rows)."""

    def __init__(self, frame: pl.DataFrame, order: pl.Series | None = None):
        self.frame, self.order = frame, order

    def __len__(self) -> int:
        return self.frame.height if self.order is None else self.order.len()

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> FrameRows: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | FrameRows:
        if isinstance(index, slice):
            return FrameRows(self.frame[index]) if self.order is None else FrameRows(self.frame, self.order[index])
        if self.order is None:
            return self.frame.row(index, named=True)
        return self.frame.row(self.order[index], named=True)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.order is None:
            yield from self.frame.iter_rows(named=True)
            return
        for start in range(0, self.order.len(), ROWS_PER_BLOCK):
            yield from self.frame[self.order.slice(start, ROWS_PER_BLOCK)].iter_rows(named=True)


@dataclass(frozen=True)
class Listing:
    """A frame's rows in an order of their own: ``order`` holds row positions (UInt32; None: the
    frame's own order), so a long list (a national reserve's red and yellow projects: over 100 MB)
    is put in order without a sorted copy of its rows."""

    frame: pl.DataFrame
    order: pl.Series | None = None

    @classmethod
    def sorted_by(cls, frame: pl.DataFrame, *by: str | pl.Expr) -> Listing:
        return cls(frame, frame.select(pl.arg_sort_by(*by)).to_series().cast(pl.UInt32))

    def __len__(self) -> int:
        return len(self.rows())

    def rows(self, start: int = 0, stop: int | None = None) -> FrameRows:
        """The rows from ``start`` to ``stop`` in the listing's order, each read when wanted."""
        return FrameRows(self.frame, self.order)[start:stop]

    def count(self, predicate: pl.Expr) -> int:
        """How many rows satisfy ``predicate``."""
        return int(self.frame.select(predicate.sum()).item())


__all__ = ["FrameRows", "Listing", "Mapped"]
