"""A routing table's revision advances one step at a time; a model's first table is taken as it comes."""

import pytest

from modelfleet_common.revisions import check_revision, is_accepted


@pytest.mark.parametrize(
    ("last", "incoming", "expected"),
    [
        (None, 1, "first"),
        (None, 57, "first"),
        (4, 5, "next"),
        (4, 4, "stale"),
        (4, 2, "stale"),
        (4, 6, "jump"),
        (4, 1004, "jump"),
    ],
)
def test_each_revision_is_first_next_stale_or_jump(last: int | None, incoming: int, expected: str) -> None:
    assert check_revision(last, incoming) == expected


def test_only_a_first_table_or_the_next_revision_is_accepted() -> None:
    assert [is_accepted(check) for check in ("first", "next", "stale", "jump")] == [True, True, False, False]
