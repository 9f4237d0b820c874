"""What a v4 runner learns of its actor's batch schemas routes every batch right."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from daqhub.measurement import ChannelSpec, DataError
from daqhub.runtime.v4 import MAX_SCHEMAS, KnownSchemas
from daqhub.schema import build_batch

pytestmark = pytest.mark.timeout(20)


def batch(instrument: str, channel: str, unified: bool = False) -> pa.RecordBatch:
    spec = ChannelSpec(channel, "scalar", "V", "float64")
    return build_batch(instrument, spec, [1], np.array([0.5]), source="v4" if unified else None)


def test_more_channels_than_remembered_each_routed_to_its_own_channel_every_time() -> None:
    known = KnownSchemas()
    names = [f"ch{i}" for i in range(MAX_SCHEMAS + 4)]
    for _ in range(3):  # round robin: every schema has been forgotten when it comes back
        for i, name in enumerate(names):
            assert known.route(batch("dmm", name, unified=i % 2 == 0).schema) == \
                (i % 2 == 0, ("dmm", name))
    for name in ("a", "b", "a", "a", "b"):  # alternating channels, remembered
        assert known.route(batch("psu", name).schema) == (False, ("psu", name))
    # the same channel of another instrument differs only in its metadata
    assert known.route(batch("psu2", "a").schema) == (False, ("psu2", "a"))


def test_a_batch_that_is_not_a_channels_is_refused() -> None:
    plain = pa.RecordBatch.from_pydict({"timestamp_ns": [1], "value": [0.5]})
    with pytest.raises(DataError, match="not a daqhub channel batch"):
        KnownSchemas().route(plain.schema)
