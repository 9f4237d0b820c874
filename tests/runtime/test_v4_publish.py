"""What a v4 runner learns of its actor's batch schemas routes every batch right."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from daqhub.measurement import ChannelSpec, DataError
from daqhub.runtime.v4 import MAX_SCHEMAS, KnownSchemas
from daqhub.schema import build_batch

pytestmark = pytest.mark.timeout(20)


def spec(channel: str, unit: str = "V") -> ChannelSpec:
    return ChannelSpec(channel, "scalar", unit, "float64")


def batch(instrument: str, channel: str, unified: bool = False, unit: str = "V"
          ) -> pa.RecordBatch:
    return build_batch(instrument, spec(channel, unit), [1], np.array([0.5]),
                       source="v4" if unified else None)


def known(*channels: tuple[str, str]) -> KnownSchemas:
    return KnownSchemas({c: spec(c[1]) for c in channels})


def test_more_channels_than_remembered_each_routed_to_its_own_channel_every_time() -> None:
    names = [f"ch{i}" for i in range(MAX_SCHEMAS + 4)]
    schemas = known(*(("dmm", n) for n in names))
    for _ in range(3):  # round robin: every schema has been forgotten when it comes back
        for i, name in enumerate(names):
            assert schemas.route(batch("dmm", name, unified=i % 2 == 0).schema) == \
                (i % 2 == 0, ("dmm", name))
    two = known(("psu", "a"), ("psu", "b"))
    for name in ("a", "b", "a", "a", "b"):  # alternating channels, remembered
        assert two.route(batch("psu", name).schema) == (False, ("psu", name))


@pytest.mark.parametrize("sent, why", [
    (batch("psu", "c"), "channel psu.c was not declared (declared: psu.a, psu.b)"),
    (batch("psu2", "a"), "channel psu2.a was not declared"),  # another instrument's name
    (batch("psu", "a", unit="mV"), "channel psu.a was declared as"),
    (pa.RecordBatch.from_pydict({"timestamp_ns": [1], "value": [0.5]}),
     "not a daqhub channel batch"),
])
def test_a_batch_of_a_channel_not_declared_so_is_refused_every_time(
        sent: pa.RecordBatch, why: str) -> None:
    schemas = known(("psu", "a"), ("psu", "b"))
    assert schemas.route(batch("psu", "a").schema) == (False, ("psu", "a"))  # the same columns
    for _ in range(2):  # the second time from what was learnt the first
        with pytest.raises(DataError) as info:
            schemas.route(sent.schema)
        assert why in str(info.value)
    assert schemas.route(batch("psu", "a").schema) == (False, ("psu", "a"))
