"""The conformance kit: generic checks every driver distribution runs on its own types.

A driver author lists cases, one per instrument type, each with a lab block
that points at a fresh simulated device, and calls the kit from a test::

    def test_conformance(daqhub_conformance, sim_url, sim_endpoint):
        daqhub_conformance.check("daqhub-acme", [
            ConformanceCase("acme.meter", lambda: {"port": sim_url("acme")},
                            steps=[("set_wavelength", 800)],
                            garbage=lambda block: sim_endpoint(block["port"]).faults
                                                  .inject_garbage(b"\\x00??\\r\\n")),
        ])

It checks, for each case: the distribution loads with no plugin problem; the
type's declarations are valid (flavors, config schema, channels) and the block
validates in a lab file; both flavors give the same data for the same scripted
sequence on fresh simulated devices; a short run gets samples on every declared channel
of each flavor (but the case's ``rare_channels``) and shuts down cleanly, with no error,
refused sample or alarm naming the instrument (a v4 poll blocking the event loop); and a
garbage reply raises an error instead of hanging.
Each failure names the case and the check, so the author knows what to fix.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pyarrow as pa

from daqhub.config import parse
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, V4Actor
from daqhub.measurement import UnifiedMeasurement
from daqhub.plugins.converters import batch_to_rows
from daqhub.resources import SerialPortManager, VisaSessionManager
from daqhub.runtime.dual import DualRuntimeManager, PhaseTimeouts, make_context
from daqhub.runtime.health import DEVICE_ERRORS, failure_text
from daqhub.runtime.watchdog import DEFAULT_BOUND_S as LOOP_BOUND_S
from daqhub.specs import InstrumentType
from daqhub.tomlwrite import dumps

Step = tuple[Any, ...]

#: The runtime's alarms (``what`` is ``kind:instrument``) that fail a short run when they name
#: the instrument under test: its v4 actor blocked the event loop (the watchdog), or its
#: mailbox outgrew the budget. A rate alarm is left out: how fast a poll comes round on a
#: loaded machine is the machine's, not the driver's.
DRIVER_ALARMS = frozenset({"loop", "mailbox"})


class ConformanceError(AssertionError):
    pass


@dataclass
class ConformanceCase:
    type: str
    #: a NEW lab block (without id/type) on a fresh simulated device, each call
    block: Callable[[], dict[str, Any]]
    #: commands run before the reads, the same for both flavors: (method, *args)
    steps: Sequence[Step] = ()
    reads: int = 3
    #: makes the next reply of the device behind ``block`` garbage; None skips that check
    garbage: Callable[[Mapping[str, Any]], None] | None = None
    #: compares two rows' data; default: equal values, dtypes and units
    same: Callable[[UnifiedMeasurement, UnifiedMeasurement], bool] | None = None
    timeout_s: float = 10.0
    ignore_metadata: Sequence[str] = field(default_factory=tuple)
    #: declared channels a short run may leave without a sample: an event channel the driver
    #: reports only when it happens (an alarm, a limit hit), not on a quiet simulated device
    rare_channels: Sequence[str] = field(default_factory=tuple)


def _rows_v2(inst: V2Instrument, case: ConformanceCase) -> list[UnifiedMeasurement]:
    inst.connect()
    try:
        for method, *args in case.steps:
            getattr(inst, method)(*args)
        rows = []
        for _ in range(case.reads):
            rows += [UnifiedMeasurement.from_v2(m) for m in inst.read()]
        return rows
    finally:
        inst.close()


class _Held:
    """Awaits a v4 actor's coroutine, timing each of its steps: what runs between two of its
    awaits holds the event loop every v4 actor of a run shares. The runtime's watchdog sees
    a block only when it outlasts a heartbeat sent after it began (a 0.4 s ``time.sleep``
    in a poll went unnoticed in one short run of three), so the kit times the calls of its
    own sequence against the watchdog's bound, and names the call."""

    def __init__(self, coro: Awaitable[Any], what: str) -> None:
        self.coro, self.what = coro, what

    def __await__(self) -> Generator[Any, Any, Any]:
        if not isinstance(self.coro, Coroutine):  # a hand-written actor's own awaitable
            return (yield from self.coro.__await__())
        value: Any = None
        error: BaseException | None = None
        longest = 0.0
        while True:
            start = time.perf_counter()
            try:
                step = self.coro.send(value) if error is None else self.coro.throw(error)
            except StopIteration as stop:
                longest = max(longest, time.perf_counter() - start)
                result = stop.value
                break
            longest = max(longest, time.perf_counter() - start)
            try:
                value, error = (yield step), None
            except BaseException as exc:  # cancelled: the coroutine sees it
                value, error = None, exc
        if longest > LOOP_BOUND_S:
            raise ConformanceError(
                f"{self.what} held the v4 event loop for {longest:.2f} s at once (the "
                f"runtime's watchdog alarms after {LOOP_BOUND_S:g} s): a blocking call in an "
                "async method (time.sleep, a synchronous read) stalls every v4 instrument; "
                "yield Pause or await instead")
        return result


async def _rows_v4(actor: V4Actor, case: ConformanceCase) -> list[UnifiedMeasurement]:
    who = f"{case.type} (v4)"
    # pyarrow imports pandas (when installed) on its first array, 0.5 s: here, not in the
    # actor's first read, as a run's storage does it before anything runs
    pa.array([0.0])
    await _Held(actor.start(), f"{who} start()")
    try:
        for method, *args in case.steps:
            result = getattr(actor, method)(*args)
            if asyncio.iscoroutine(result):
                await _Held(result, f"{who} {method}()")
        rows = []
        for _ in range(case.reads):
            batches: list[pa.RecordBatch] = await _Held(actor.read(), f"{who} read()")
            for b in batches:
                rows += batch_to_rows(b)
        return rows
    finally:
        await actor.close()


def _read_after_garbage(inst: Any, case: ConformanceCase, block: Mapping[str, Any]) -> None:
    assert case.garbage is not None
    if isinstance(inst, V2Instrument):
        inst.connect()
        try:
            case.garbage(block)
            inst.read()
        finally:
            inst.close()
        return

    async def go() -> None:
        await inst.start()
        try:
            case.garbage(block)  # type: ignore[misc]
            await inst.read()
        finally:
            await inst.close()
    asyncio.run(go())


def _channels_without_samples(rt: DualRuntimeManager, flavor_of: Mapping[str, str],
                              rare: Sequence[str]) -> dict[str, list[str]]:
    """Instrument -> its declared channels, but ``rare``, that no sample has reached yet.
    Read with ``dict.get``: the bridge's counters are its thread's, and a lookup of a missing
    key in them (a ``defaultdict``) would add it from this one."""
    counts = rt.bridge.counts if rt.bridge is not None else {}
    out: dict[str, list[str]] = {}
    for iid, channel in rt.channels:
        if channel not in rare and not counts.get(flavor_of[iid], {}).get((iid, channel)):
            out.setdefault(iid, []).append(channel)
    return out


def _in_trouble(h: Mapping[str, Any]) -> bool:
    """An instrument whose short run has gone wrong already: waiting longer for its samples
    only hides the cause behind a timeout."""
    return h["state"] == "failed" or bool(h["errors"]) or bool(h["refused_samples"])


def _short_run_failure(case: ConformanceCase, health: Sequence[Mapping[str, Any]],
                       flavor_of: Mapping[str, str], unfed: Mapping[str, list[str]],
                       waited: float) -> str:
    """Why the wait for a short run's samples failed: first each instrument's state, errors,
    refused samples and last error (the cause: a start that raised, rows refused for a wrong
    unit), then the declared channels without a sample, which such a cause empties. A cause
    ends the wait at once, so another instrument's channels are named only after the whole
    timeout."""
    causes, missing = [], []
    for h in health:
        who, unfilled = f"{case.type} ({flavor_of[h['id']]})", unfed.get(h["id"])
        if _in_trouble(h):
            counts = [f"{n} {what}" for n, what in ((h["errors"], "error(s)"),
                                                   (h["refused_samples"], "refused sample(s)"))
                      if n]
            causes.append(f"{who}: {h['state']}, {', '.join(counts) or 'no error counted'} "
                          f"{waited:.1f} s into a short run on a fresh simulated device, the "
                          f"last: {h['last_error'] or '(none recorded)'}"
                          + (f" (no sample yet on {', '.join(unfilled)})" if unfilled else ""))
        elif waited > case.timeout_s and (unfilled or h["measurements"] < 2):
            missing.append(f"{who}: {h['state']}, {h['measurements']} sample(s)" + (
                f" but none on the declared channel(s) {', '.join(unfilled)}" if unfilled
                else "") + f" within {case.timeout_s} s of a short run on a fresh simulated "
                "device (a declared channel the driver never fills is an empty column in "
                "every run; one it fills only now and then belongs in the case's "
                "rare_channels)")
    return "; ".join(causes + missing)


def _bounded(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a thread; a hang becomes a failure that says what hung."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed back to the caller below
            out["error"] = exc
    t = threading.Thread(target=target, name=f"conformance:{what}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise ConformanceError(f"{what} did not finish within {timeout} s (a hang)")
    if "error" in out:
        raise out["error"]
    return out.get("value")


class ConformanceKit:
    def __init__(self) -> None:
        self.host = PluginHost()
        self.host.load_entry_points()

    def check(self, distribution: str, cases: Sequence[ConformanceCase]) -> None:
        self.check_registration(distribution)
        for case in cases:
            types = self.types_of(case)
            self.check_declarations(case, types)
            if len(types) == 2:
                self.check_flavors_agree(case, types)
            self.check_clean_shutdown(case, types)
            if case.garbage is not None:
                self.check_garbage_raises(case, types)

    # --- the checks -------------------------------------------------------------------

    def check_registration(self, distribution: str) -> None:
        # a declaration is checked (and a clash found) when the types are first collected:
        # read before that, a clash passed here and the type was "not registered by any
        # installed plugin"
        self.host.instrument_types()
        mine = [p for p in self.host.problems if p.distribution == distribution]
        if mine:
            raise ConformanceError(f"{distribution} has plugin problems: "
                                   + "; ".join(p.error for p in mine))
        if not any(i.distribution == distribution for i in self.host.plugins.values()):
            raise ConformanceError(f"{distribution} registers no daqhub plugin (entry point "
                                   "group 'daqhub')")

    def types_of(self, case: ConformanceCase) -> dict[str, InstrumentType]:
        types = {f: t for (n, f), t in self.host.instrument_types().items() if n == case.type}
        if not types:
            raise ConformanceError(f"{case.type}: not registered by any installed plugin")
        return types

    def check_declarations(self, case: ConformanceCase, types: Mapping[str, InstrumentType]
                           ) -> None:
        for flavor, t in types.items():
            if t.problems():
                raise ConformanceError(f"{case.type} ({flavor}): {t.problems()}")
            jsonschema.Draft202012Validator.check_schema(dict(t.config_schema))
            channels = t.channels_for(case.block())
            if not channels:
                raise ConformanceError(f"{case.type} ({flavor}) declares no channels")
            lab = {"daqhub": {"output_dir": "conformance-data"},
                   flavor: {"instruments": [{"id": "dut", "type": case.type,
                                             **case.block()}]}}
            parse(dumps(lab), f"<{case.type} {flavor}>", self.host)
        caps = {f: set(t.capabilities) for f, t in types.items()}
        if len(caps) == 2 and caps["v2"] != caps["v4"]:
            raise ConformanceError(f"{case.type}: flavors declare different capabilities "
                                   f"{caps}")

    def _instance(self, t: InstrumentType, block: Mapping[str, Any],
                  serial: SerialPortManager, visa: VisaSessionManager) -> Any:
        return t.factory(make_context(t, "dut", block, serial, visa))

    def run_flavor(self, case: ConformanceCase, t: InstrumentType) -> list[UnifiedMeasurement]:
        serial = SerialPortManager(self.host.serial_url_packages())
        visa = VisaSessionManager()
        try:
            inst = self._instance(t, case.block(), serial, visa)
            if t.flavor == "v2":
                return _bounded(lambda: _rows_v2(inst, case), case.timeout_s,  # type: ignore
                                f"{case.type} v2 sequence")
            return _bounded(lambda: asyncio.run(_rows_v4(inst, case)),  # type: ignore
                            case.timeout_s, f"{case.type} v4 sequence")
        finally:
            serial.close_all()
            visa.close_all()

    def check_flavors_agree(self, case: ConformanceCase,
                            types: Mapping[str, InstrumentType]) -> None:
        a = self.run_flavor(case, types["v2"])
        b = self.run_flavor(case, types["v4"])
        key = lambda r: (r.channel,)  # noqa: E731 - order within a channel is what matters
        by_a: dict[tuple[str], list[UnifiedMeasurement]] = {}
        by_b: dict[tuple[str], list[UnifiedMeasurement]] = {}
        for r in a:
            by_a.setdefault(key(r), []).append(r)
        for r in b:
            by_b.setdefault(key(r), []).append(r)
        if set(by_a) != set(by_b):
            raise ConformanceError(f"{case.type}: v2 gave channels {sorted(by_a)}, v4 "
                                   f"{sorted(by_b)}")
        same = case.same or (lambda x, y: x.data == y.data)
        for k in by_a:
            if len(by_a[k]) != len(by_b[k]):
                raise ConformanceError(f"{case.type} {k[0]}: v2 gave {len(by_a[k])} samples, "
                                       f"v4 {len(by_b[k])}")
            for i, (x, y) in enumerate(zip(by_a[k], by_b[k], strict=True)):
                if not same(x, y):
                    raise ConformanceError(f"{case.type} {k[0]} sample {i}: v2 {x.data} != "
                                           f"v4 {y.data}")
                mx = {m: v for m, v in x.metadata.items() if m not in case.ignore_metadata}
                my = {m: v for m, v in y.metadata.items() if m not in case.ignore_metadata}
                if mx != my:
                    raise ConformanceError(f"{case.type} {k[0]} sample {i}: metadata differs: "
                                           f"v2 {mx} v4 {my}")

    def check_clean_shutdown(self, case: ConformanceCase,
                             types: Mapping[str, InstrumentType]) -> None:
        doc: dict[str, Any] = {"daqhub": {"output_dir": "conformance-data"}}
        for flavor in types:
            doc[flavor] = {"instruments": [{"id": f"dut_{flavor}", "type": case.type,
                                            "poll_hz": 20, **case.block()}]}
        lab = parse(dumps(doc), f"<{case.type} run>", self.host)
        rt = DualRuntimeManager(lab, self.host, phases=PhaseTimeouts(total_s=case.timeout_s))
        rt.start()
        flavor_of = {f"dut_{flavor}": flavor for flavor in types}
        started = time.monotonic()
        try:
            while True:  # samples on every declared channel, or a cause to stop waiting
                health = [h for h in rt.health()["instruments"] if h["id"] in flavor_of]
                unfed = _channels_without_samples(rt, flavor_of, case.rare_channels)
                trouble = any(_in_trouble(h) for h in health)
                if not trouble and not unfed and all(h["measurements"] >= 2 for h in health):
                    break
                waited = time.monotonic() - started
                if trouble or waited > case.timeout_s:
                    raise ConformanceError(_short_run_failure(case, health, flavor_of, unfed,
                                                              waited))
                time.sleep(0.02)
        finally:
            report = rt.shutdown()
        if not report.ok:
            raise ConformanceError(f"{case.type}: unclean shutdown: {report.as_dict()}")
        bad = [h for h in rt.health()["instruments"] if h["state"] == "failed"]
        if bad:
            raise ConformanceError(f"{case.type}: failed during a short run: {bad}")
        for alarm in rt.alarms:  # what is "loop:dut_v4", "mailbox:dut_v4" ...
            kind, _, about = alarm["what"].partition(":")
            if kind in DRIVER_ALARMS and about in flavor_of:
                raise ConformanceError(f"{case.type} ({flavor_of[about]}): the runtime raised "
                                       f"an alarm during a short run: {alarm['message']}")
        for outcome in report.instruments:  # its errors, and the last it ever had
            if outcome["errors"]:
                raise ConformanceError(f"{case.type} ({outcome['flavor']}): "
                                       f"{outcome['errors']} error(s) during a short run on a "
                                       f"fresh simulated device, the last: "
                                       f"{outcome['last_error']}")

    def check_garbage_raises(self, case: ConformanceCase,
                             types: Mapping[str, InstrumentType]) -> None:
        assert case.garbage is not None
        for flavor, t in types.items():
            serial = SerialPortManager(self.host.serial_url_packages())
            visa = VisaSessionManager()
            block = case.block()
            try:
                inst = self._instance(t, block, serial, visa)
                try:
                    _bounded(lambda i=inst, b=block: _read_after_garbage(i, case, b),  # type: ignore[misc]
                             case.timeout_s, f"{case.type} {flavor} read of garbage")
                except ConformanceError:
                    raise
                except DEVICE_ERRORS:
                    continue  # a device error, as the runtime expects of bad replies
                except Exception as exc:  # a bug the garbage set off: the runtime crashes
                    raise ConformanceError(
                        f"{case.type} ({flavor}): a garbage reply raised "
                        f"{failure_text(exc)}; a driver says a reply is bad with a "
                        "DriverError (DriverReplyError), not another exception") from exc
                raise ConformanceError(f"{case.type} ({flavor}): a garbage reply was accepted "
                                       "without an error")
            finally:
                serial.close_all()
                visa.close_all()
