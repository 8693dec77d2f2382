"""A frame's rows listed in an order of their own read exactly as a sorted copy of them would."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.alerts.mapped import ROWS_PER_BLOCK, FrameRows, Listing

rows = st.lists(st.tuples(st.sampled_from(["red", "yellow"]), st.integers(0, 50)), max_size=60)


def frame_of(pairs: list[tuple[str, int]]) -> pl.DataFrame:
    return pl.DataFrame({"color": [c for c, _ in pairs], "code": [f"P{n:03d}" for _, n in pairs],
                         "at": list(range(len(pairs)))}, schema={"color": pl.Utf8, "code": pl.Utf8, "at": pl.Int64})


@settings(max_examples=200, deadline=None)
@given(rows, st.integers(-70, 70), st.integers(-70, 70))
def test_a_listing_reads_as_the_sorted_copy(pairs: list[tuple[str, int]], start: int, stop: int) -> None:
    frame = frame_of(pairs)
    by = (pl.col("color") != "red", "code", "at")
    copy = frame.sort(*by)
    expected = copy.to_dicts()
    for listing in (Listing.sorted_by(frame, *by), Listing(copy)):  # in an order of its own; in the frame's
        read = listing.rows()
        assert len(listing) == len(read) == frame.height
        assert list(read) == expected
        assert [read[i] for i in range(-len(read), len(read))] == expected + expected
        assert list(read[start:stop]) == expected[start:stop]
        assert list(read[start:stop][1::2]) == expected[start:stop][1::2]
        reds = listing.count(pl.col("color") == "red")
        assert list(listing.rows(0, reds)) == [r for r in expected if r["color"] == "red"]
        assert list(listing.rows(reds)) == [r for r in expected if r["color"] != "red"]


def test_reading_out_of_range_is_an_index_error() -> None:
    read = Listing.sorted_by(frame_of([("red", 2), ("yellow", 1)]), "code").rows()
    for index in (2, -3):
        try:
            read[index]
        except IndexError:
            continue
        raise AssertionError(f"row {index} of 2 was read")


def test_a_long_listing_is_read_a_block_at_a_time_in_order() -> None:
    n = ROWS_PER_BLOCK * 2 + 7
    frame = pl.DataFrame({"code": [f"P{(i * 7919) % n:06d}" for i in range(n)]})
    assert [r["code"] for r in Listing.sorted_by(frame, "code").rows()] == sorted(frame["code"].to_list())
    assert [r["code"] for r in FrameRows(frame)] == frame["code"].to_list()
