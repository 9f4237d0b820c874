"""``daqhub record URL --output-dir D``: a full copy of a running session on another machine.

The copy is written by the same storage router and backends as the run's own (HDF5 / Arrow,
same layout, same session id, lab file and versions), from two sources of the same rows:

- the session's files, read through the service from the row this copy has up to: what the
  run stored before the recorder (re)joined, and what a slow or broken link made it miss;
- the live stream, for everything after;
- the session's record files (metadata, settings snapshots, points tables: :mod:`daqhub.records`)
  byte for byte, followed while the run goes on and fetched once more after it stops, so the
  records written last (the final points row) are in the copy too.

Every live batch carries its first row index (the file's row index), so the two are joined
without overlap. Rows that neither gives (produced before the recorder joined and not stored
yet when it asked, or lost while the link was down and never stored) are reported as gaps,
per channel, with their row range. A broken link is retried with backoff; a recorder
restarted into the same directory moves its predecessor's partial copy aside and starts the
copy again from the files. A run that ended while the link was down (the service, back,
runs a new session) is finished from its files: the new run's service offers them when it
stores into the same directories, and when it does not, or cannot read them, the copy is
incomplete, with the channels and record files it may lack named (how many rows is
unknown). A lost link ends the attempt's streams, the followed record files' too, before the
next attempt opens its own. A recorder stopped (``stop``: Ctrl-C, SIGTERM) before the service
said the session ended keeps what it copied, closed and readable, and says the copy is
incomplete: it cannot know what the session stored after. Exit codes: 0 a complete copy, 1 a
copy with gaps (listed), an ended session's files not offered or unreadable (named) or a link
that never came back, 2 bad arguments or storage that cannot open, 130 stopped before the
session ended.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pyarrow as pa
import pyarrow.flight as flight

from .flight_client import (
    STOP_CHECK_S,
    Channel,
    Connection,
    LinkLostError,
    LiveBatch,
    clear_message,
)
from .interrupt import EXIT_INTERRUPTED
from .measurement import ChannelSpec
from .record_transfer import write_file
from .storage import FlavorStorage, StorageError, StorageSession, check_id, is_session_id

if TYPE_CHECKING:
    from .host import PluginHost

EXIT_COMPLETE, EXIT_GAPS, EXIT_USAGE = 0, 1, 2
#: stopped before the session ended: the command's documented code for an interrupted command
EXIT_STOPPED = EXIT_INTERRUPTED
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
#: how long the record files' stream may take to end after the live streams have
RECORDS_WAIT_S = 10.0
#: how long an ended attempt's record-file follower may take to stop (its stream is cancelled)
FOLLOWER_JOIN_S = 5.0


@dataclass(frozen=True)
class Gap:
    channel: str
    first_row: int
    rows: int

    def __str__(self) -> str:
        return (f"{self.channel}: rows {self.first_row}..{self.first_row + self.rows - 1} "
                f"({self.rows}) not received")


@dataclass
class RecordResult:
    session_id: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    files: dict[str, list[Path]] = field(default_factory=dict)
    links_lost: int = 0
    moved_aside: list[Path] = field(default_factory=list)
    error: str = ""
    #: told to stop before the service said the session ended (``error`` says what the copy
    #: holds, and where): the copy is incomplete, whatever it holds
    stopped: bool = False

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return EXIT_STOPPED
        return EXIT_GAPS if self.gaps or self.error else EXIT_COMPLETE


class Recorder:
    """Copies the session running behind ``conn`` into ``output_dir``."""

    def __init__(self, conn: Connection, output_dir: Path, host: PluginHost, out: TextIO, *,
                 give_up_s: float = 60.0) -> None:
        self.conn = conn
        self.output_dir = Path(output_dir)
        self.host = host
        self.out = out
        self.give_up_s = give_up_s
        self.result = RecordResult()
        self._written: dict[str, int] = {}
        self._flavor_of: dict[str, str] = {}  # channel key -> its flavor
        self._storage: StorageSession | None = None

    @property
    def rows_copied(self) -> int:
        """Rows in the copy so far (all channels)."""
        return sum(self._written.values())

    def say(self, text: str) -> None:
        print(f"daqhub record: {text}", file=self.out, flush=True)

    # --- opening the copy ---------------------------------------------------------------

    def _open(self, manifest: dict[str, Any]) -> None:
        sid = str(manifest.get("session_id", ""))
        if not is_session_id(sid) and check_id(sid) is not None:
            raise StorageError(f"the service names session {sid!r}, not a session id")
        plans = {}
        for flavor, f in manifest["flavors"].items():
            plans[flavor] = FlavorStorage(
                backend=f["backend"], options=f["options"], instruments=f["instruments"],
                channels={i: [ChannelSpec.from_dict(s) for s in specs]
                          for i, specs in f["channels"].items()})
            here = self.output_dir / flavor / sid
            if here.exists():  # a previous recorder's partial copy: keep it, start afresh
                n = 1
                while (aside := here.with_name(f"{sid}.partial-{n}")).exists():
                    n += 1
                here.rename(aside)
                self.result.moved_aside.append(aside)
                self.say(f"moved the partial copy {here} aside to {aside}")
        self._storage = StorageSession.open(self.host, self.output_dir, plans,
                                            lab_config=manifest["lab_config"],
                                            session_id=sid, versions=manifest["versions"])
        self.result.session_id = sid
        for flavor, f in manifest["flavors"].items():
            for iid, specs in f["channels"].items():
                for s in specs:
                    self._written.setdefault(f"{iid}/{s['name']}", 0)
                    self._flavor_of[f"{iid}/{s['name']}"] = str(flavor)
        self.say(f"copying session {sid} into {self.output_dir}")

    # --- writing ------------------------------------------------------------------------

    def _write(self, key: str, batch: pa.RecordBatch) -> None:
        assert self._storage is not None
        self._storage.write(batch)
        self._written[key] = self._written.get(key, 0) + batch.num_rows

    def _stored(self) -> tuple[dict[str, Channel], dict[str, str]]:
        """This session's stored channels by key, and flavor -> why the service cannot read
        that flavor's files (none of its channels are listed then)."""
        sid = self.result.session_id
        found = self.conn.stored(sid)
        flavors = found.sessions.get(sid, {})
        return ({c.key: c for chans in flavors.values() for c in chans},
                found.unreadable.get(sid, {}))

    def _fill_all(self) -> tuple[dict[str, Channel], dict[str, str]]:
        """Every channel's rows the stored files have beyond the copy's; what is stored (and
        which flavors cannot be read)."""
        stored, unreadable = self._stored()
        for key in list(self._written):
            self._fill(stored, key)
        return stored, unreadable

    def _fill(self, stored: dict[str, Channel], key: str, upto: int | None = None) -> None:
        """Rows from what this copy has up to ``upto`` (None: all), from the files."""
        channel = stored.get(key)
        if channel is None:
            return
        for batch in self.conn.read_channel(channel, self._written[key]):
            if upto is not None:
                batch = batch.slice(0, max(0, upto - self._written[key]))
            if batch.num_rows:
                self._write(key, batch)
            if upto is not None and self._written[key] >= upto:
                return

    def _take(self, item: LiveBatch) -> None:
        key = item.key
        have = self._written.setdefault(key, 0)
        if item.first_row > have:  # missed rows: maybe stored by now
            self._fill(self._stored()[0], key, item.first_row)
            have = self._written[key]
            if item.first_row > have:
                gap = Gap(key, have, item.first_row - have)
                self.result.gaps.append(gap)
                self.say(f"gap: {gap}")
                self._written[key] = item.first_row  # the rows after it go on from there
        skip = self._written[key] - item.first_row
        if skip < item.batch.num_rows:
            assert self._storage is not None
            self._storage.write(item.batch.slice(skip))
            self._written[key] = item.first_row + item.batch.num_rows

    def _copy_records(self, flavors: list[str] | None = None, follow: bool = False,
                      stop: threading.Event | None = None) -> None:
        """The record files of ``flavors`` (None: all) into the copy (``follow``: until the
        run stops, or ``stop`` is set)."""
        assert self._storage is not None
        sid = self.result.session_id
        for flavor, directory in sorted(self._storage.directories.items()):
            if flavors is not None and flavor not in flavors:
                continue
            for name, data in self.conn.record_files(sid, flavor, follow=follow, stop=stop):
                if stop is not None and stop.is_set():
                    return  # its attempt ended: a newer one may write these files
                write_file(directory, name, data)

    def _follow_records(self, flavor: str, failed: list[str], stop: threading.Event) -> None:
        try:
            self._copy_records([flavor], True, stop)
        except Exception:  # the link broke: fetched again once the run has stopped
            failed.append(flavor)

    def _finish_ended(self) -> None:
        """The rest of a session that ended while the link was down: its rows and final record
        files, from its files. The service still offers them when the lab that runs there now
        stores into the same directories. Every channel not finished so is named in the
        result's error, whatever the reason (files not offered, or offered but unreadable: a
        truncated file was left out of the listing, and the copy said complete): the copy is
        incomplete by an unknown number of rows."""
        assert self._storage is not None
        offered = []
        for flavor in sorted(self._storage.directories):
            try:
                self._copy_records([flavor])
            except (flight.FlightServerError, pa.ArrowInvalid):  # "no session ... here"
                continue
            offered.append(flavor)
        stored, unreadable = self._fill_all()
        readable = [f for f in offered if f not in unreadable]
        # finished: read from the files to their end, or in none of a readable flavor's files
        # while the copy has no row of it either (it stored none)
        lacking = [f"{key} from row {n}" for key, n in sorted(self._written.items())
                   if key not in stored and (n or self._flavor_of.get(key) not in readable)]
        not_offered = [f for f in sorted(self._storage.directories) if f not in offered]
        lacking += [f"the record files of {f}" for f in not_offered]
        if lacking:
            why = [f"the service no longer offers its {f} files" for f in not_offered]
            why += [f"the service cannot read its {f} files ({unreadable[f]})"
                    for f in sorted(unreadable)]
            self.result.error = (f"session {self.result.session_id} ended while the link was "
                                 f"down and {'; '.join(why) or 'its files lack channels'}: "
                                 f"the copy may lack {', '.join(lacking)}")
            self.say(self.result.error)

    # --- the loop -----------------------------------------------------------------------

    def _copy_once(self, stop: threading.Event) -> bool:
        """Follow the run until it ends (True), ``stop`` is set first (False: what the live
        streams had brought is written) or the link breaks (LinkLostError)."""
        manifest = self.conn.manifest()
        if self._storage is None:
            self._open(manifest)
        elif manifest.get("session_id") != self.result.session_id:
            self.say(f"the service now runs session {manifest.get('session_id')}: session "
                     f"{self.result.session_id} has ended; finishing the copy from its files")
            self._finish_ended()
            return True
        else:
            self.say("link back: resuming (what was missed comes from the run's files)")
        live = self.conn.subscribe("*") if manifest.get("running") else None
        assert self._storage is not None
        failed: list[str] = []
        ended = threading.Event()  # this attempt's: its followers end with it
        followers = [threading.Thread(target=self._follow_records, args=(str(f), failed, ended),
                                      daemon=True, name=f"daqhub-record-records:{f}")
                     for f in sorted(self._storage.directories)] if live is not None else []
        try:
            for t in followers:
                t.start()
            self._fill_all()
            if live is None:
                self._copy_records()
                return True
            while True:  # not `for item in live`: with every channel quiet, a stop went unseen
                try:
                    item = live.get(0 if stop.is_set() else STOP_CHECK_S)
                except StopIteration:  # every stream ended: the run stopped
                    break
                if item is not None:
                    self._take(item)
                elif stop.is_set():  # what had come is written; the run goes on
                    return False
            deadline = time.monotonic() + RECORDS_WAIT_S
            for t in followers:
                t.join(max(0.0, deadline - time.monotonic()))
            late = failed + [t.name.split(":")[1] for t in followers if t.is_alive()]
            if late:  # their last versions did not come: fetch them
                self._copy_records(late)
            return True
        finally:
            # a lost link (the watchdog, a broken stream) or a stop: the followers' streams end
            # here, else each reconnect added followers writing the same files
            ended.set()
            if live is not None:
                live.close()
            for t in followers:
                if t.is_alive():  # else ended, or never started (an earlier start failed)
                    t.join(FOLLOWER_JOIN_S)

    def run(self, stop: threading.Event | None = None) -> RecordResult:
        stop = stop or threading.Event()
        retry = RETRY_FIRST_S
        down_since: float | None = None
        finished = False  # the service said the session ended, and the copy was finished
        try:
            while not stop.is_set():
                try:
                    if self._copy_once(stop):
                        finished = True
                        break
                except (LinkLostError, TimeoutError, flight.FlightUnavailableError,
                        flight.FlightTimedOutError, flight.FlightCancelledError) as exc:
                    # TimeoutError: a call the host did not answer (a frozen host)
                    now = time.monotonic()
                    if down_since is None:
                        down_since = now
                        self.result.links_lost += 1
                        self.say(f"link lost ({clear_message(exc)}); reconnecting")
                    if now - down_since > self.give_up_s:
                        self.result.error = (f"the service did not come back within "
                                             f"{self.give_up_s:.0f} s")
                        break
                    stop.wait(retry)
                    retry = min(retry * 2, RETRY_MAX_S)
                    continue
                retry, down_since = RETRY_FIRST_S, None
        finally:
            if self._storage is not None:
                self.result.files = {str(f): p for f, p in self._storage.close().items()}
        self.result.rows = dict(self._written)
        for gap in self.result.gaps:
            self.result.rows[gap.channel] -= gap.rows
        if not finished and not self.result.error:  # stopped: running, or the link down
            self.result.stopped = True
            self.result.error = self._stopped_early()
        return self.result

    def _stopped_early(self) -> str:
        """What a copy stopped before its session ended holds, where, and what it lacks."""
        sid = self.result.session_id
        if not sid:
            return (f"stopped before the service named its session: nothing copied into "
                    f"{self.output_dir}")
        where = ", ".join(str(self.output_dir / flavor / sid)
                          for flavor in sorted(self.result.files))
        rows = sum(self.result.rows.values())
        return (f"stopped before session {sid} ended: {rows} row(s) of "
                f"{len(self.result.rows)} channel(s) copied, in {where} (closed, readable); "
                "the rows after those and the record files the session writes as it ends "
                "(budget.json) are not in the copy")


def report(result: RecordResult, out: TextIO) -> None:
    print(f"session {result.session_id or '?'}: "
          + ", ".join(f"{k}={n}" for k, n in sorted(result.rows.items())), file=out)
    for flavor, paths in sorted(result.files.items()):
        for p in paths:
            print(f"  {flavor}: {p}", file=out)
    if result.links_lost:
        print(f"link lost {result.links_lost} time(s)", file=out)
    for gap in result.gaps:
        print(f"gap: {gap}", file=out)
    print("copy complete" if result.exit_code == EXIT_COMPLETE else
          f"copy INCOMPLETE: {result.error or f'{len(result.gaps)} gap(s)'}", file=out)
