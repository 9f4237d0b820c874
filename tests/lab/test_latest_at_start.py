"""``Lab.latest`` sees the samples taken while ``open_lab`` was starting the lab: a channel
that reports only in its first poll is there, as it is in the stored data."""

from __future__ import annotations

import types

import numpy as np
import pyarrow as pa
import pytest

import daqhub
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

EVERY, ONCE = ChannelSpec("every", "scalar", "V"), ChannelSpec("once", "scalar", "V")
#: what ``once`` says, in the first poll only
ONCE_VALUE = 42.0


class OnceV2(V2Instrument):
    polls = 0

    def read(self) -> list[Measurement]:
        self.polls += 1
        t = now_ns()
        return [Measurement(self.id, "every", t, Scalar(float(self.polls), "V")),
                *([Measurement(self.id, "once", t, Scalar(ONCE_VALUE, "V"))]
                  if self.polls == 1 else [])]


class OnceV4(V4Actor):
    polls = 0

    async def read(self) -> list[pa.RecordBatch]:
        self.polls += 1
        t = now_ns()
        return [build_batch(self.id, EVERY, [t], np.array([float(self.polls)])),
                *([build_batch(self.id, ONCE, [t], np.array([ONCE_VALUE]))]
                  if self.polls == 1 else [])]


#: a wide instrument's other channels: each poll gives 200 batches more than a bridge window
#: of ``latest``'s first capacity (100 batches) held, the oldest dropped every time
WIDE = [ChannelSpec(f"c{i}", "scalar", "V") for i in range(200)]


class WideV2(OnceV2):
    def read(self) -> list[Measurement]:
        rows = super().read()
        return rows + [Measurement(self.id, c.name, rows[0].timestamp_ns, Scalar(1.0, "V"))
                       for c in WIDE]


class WideV4(OnceV4):
    async def read(self) -> list[pa.RecordBatch]:
        t = now_ns()
        return await super().read() + [build_batch(self.id, c, [t], np.array([1.0]))
                                       for c in WIDE]


def once_types() -> list[InstrumentType]:
    return [InstrumentType("test.once", flavor, "none", cls, [EVERY, ONCE],
                           "a meter whose channel 'once' reports in its first poll only")
            for flavor, cls in (("v2", OnceV2), ("v4", OnceV4))] + [
        InstrumentType("test.wide", flavor, "none", cls, [EVERY, ONCE, *WIDE],
                       "a wide meter whose channel 'once' reports in its first poll only")
        for flavor, cls in (("v2", WideV2), ("v4", WideV4))]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("flavor", ["v2", "v4"])
@pytest.mark.parametrize("kind", ["once", "wide"])
def test_latest_has_a_channel_that_reported_only_in_the_first_poll(
        host: PluginHost, flavor: str, kind: str) -> None:
    """Subscribed only after the runtime had started, latest() missed the first poll: 'once'
    stayed absent and latest(wait=1.5) timed out in 5 runs of 5, though the sample was stored.
    So it did, at every window, for an instrument of more channels than its queue held."""
    plugin = types.SimpleNamespace(daqhub_instrument_types=hookimpl(once_types))
    assert host.register(plugin, "once-tests", "once-tests", "0")
    lab_text = f'[[{flavor}.instruments]]\nid = "m"\ntype = "test.{kind}"\npoll_hz = 50\n'
    with daqhub.open_lab(lab_text, host=host, storage=False, report=None) as lab:
        latest = lab.latest("m", wait=10.0)
    assert latest["once"]["value"] == ONCE_VALUE
    assert latest["once"]["source"] == flavor
