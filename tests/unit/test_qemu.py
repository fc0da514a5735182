"""``facts.qemu``: how versions are compared and named, and the texts named from them."""

from __future__ import annotations

import pytest

from qmpdirty.decisions.migration.dirtyrate import choose_mode
from qmpdirty.facts.qemu import (
    OLDEST_SUPPORTED,
    VIOMMU_RELAXED,
    release_before,
    release_text,
    since,
    version_text,
)


def test_since_compares_feature_releases() -> None:
    assert since((10, 0, 2), (10, 0, 0))
    assert since((10, 1, 0), (10, 0, 0))
    assert not since((9, 2, 4), (10, 0, 0))


def test_names() -> None:
    assert version_text((10, 0, 2)) == "10.0.2"
    assert version_text((10, 0, 0)) == "10.0.0"
    assert release_text(OLDEST_SUPPORTED) == "8.0"


@pytest.mark.parametrize(("release", "before"), [
    ((11, 0, 0), (10, 2, 0)), ((10, 1, 0), (10, 0, 0)), ((8, 2, 0), (8, 1, 0)),
])
def test_release_before(release: tuple[int, int, int], before: tuple[int, int, int]) -> None:
    assert release_before(release) == before


def test_texts_named_from_the_constants_read_as_before() -> None:
    assert release_text(release_before(VIOMMU_RELAXED)) == "10.2"
    assert choose_mode("dirty-bitmap", (10, 0, 2), True) == (
        "page-sampling",
        "dirty-bitmap would start VFIO dirty tracking on QEMU >= 10.0; using page-sampling")
