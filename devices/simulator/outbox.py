"""The devices' store-and-forward queue: one SQLite database (WAL) per simulator worker.

A message is written here, with its `seq`, before it is first published, and it leaves
the pending state only when the broker answered its PUBACK with a reason code < 0x80.
Acknowledged messages are kept for a while (the last `keep_acked` per device) so that a
"resend from seq N" command can be answered; refused ones stay for inspection. The next
`seq` of every device is stored too, so numbering survives a restart.

The run itself is checkpointed in the same transactions: how far generation got (wall
seconds after the run's start) and how long the ground-truth file was then. A simulator
killed mid-run (kill -9) and started again with the same options and queue resumes from
there: what was committed is delivered from the queue, what was generated after the
checkpoint is generated again, identically (same seq, same payload), and the ground truth
is cut back to the checkpoint so nothing is recorded twice.

Writes are buffered and committed in one transaction per flush (every few tens of
milliseconds): the engine publishes a message only after the commit that stored it.
WAL with `synchronous=NORMAL` survives a crash of the process (not of the machine).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PENDING: Final = 0
ACKED: Final = 1
REFUSED: Final = 2

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS device_seq (
    device_id TEXT PRIMARY KEY,
    next_seq  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    device_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    state     INTEGER NOT NULL DEFAULT 0,
    payload   BLOB NOT NULL,
    reason    INTEGER,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (device_id, seq) WHERE state = 0;
CREATE TABLE IF NOT EXISTS run_checkpoint (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL,
    start       REAL NOT NULL,
    wall0       REAL NOT NULL,
    upto        REAL NOT NULL,
    gt_pos      INTEGER,
    finished    INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where an unfinished run stopped: its clock and the last committed generation offset."""

    start: float
    wall0: float
    upto: float  # wall seconds after the start generated and committed (-1: nothing yet)
    gt_pos: int | None  # size of the ground-truth file at that commit


@dataclass(slots=True)
class Backlog:
    """What a device finds in the queue at start-up."""

    next_seq: int = 1
    pending: list[tuple[int, bytes]] = field(default_factory=list)
    more_pending: bool = False


class Outbox:
    """Buffered writer and reader of the queue database; single-threaded use."""

    def __init__(self, path: Path, *, keep_acked: int = 256) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.keep_acked = keep_acked
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._added: list[tuple[str, int, bytes]] = []
        self._next_seq: dict[str, int] = {}
        self._acked: list[tuple[str, int]] = []
        self._refused: list[tuple[int, str, int]] = []
        self._progress: tuple[float, int | None] | None = None

    # --- start-up ---------------------------------------------------------------------------
    def load(self, device_ids: list[str], memory_cap: int) -> dict[str, Backlog]:
        """Next seq and the oldest `memory_cap` pending messages of each device."""
        backlogs = {d: Backlog() for d in device_ids}
        for device_id, next_seq in self._db.execute("SELECT device_id, next_seq FROM device_seq"):
            if device_id in backlogs:
                backlogs[device_id].next_seq = int(next_seq)
        for device_id, backlog in backlogs.items():
            rows = self.pending_after(device_id, 0, memory_cap + 1)
            backlog.more_pending = len(rows) > memory_cap
            backlog.pending = rows[:memory_cap]
            if rows:
                backlog.next_seq = max(backlog.next_seq, rows[-1][0] + 1)
        return backlogs

    # --- run checkpoint -------------------------------------------------------------------
    def resumable(self, fingerprint: str) -> Checkpoint | None:
        """The checkpoint of an unfinished run with the same fingerprint, if any."""
        row = self._db.execute(
            "SELECT start, wall0, upto, gt_pos FROM run_checkpoint WHERE id = 1 AND finished = 0 AND fingerprint = ?",
            (fingerprint,),
        ).fetchone()
        if row is None:
            return None
        return Checkpoint(float(row[0]), float(row[1]), float(row[2]), None if row[3] is None else int(row[3]))

    def begin_run(self, fingerprint: str, start: float, wall0: float, gt_pos: int | None) -> None:
        """Record a new run (nothing generated yet); replaces any earlier checkpoint."""
        self.commit()
        self._db.execute(
            "INSERT INTO run_checkpoint (id, fingerprint, start, wall0, upto, gt_pos, finished) "
            "VALUES (1, ?, ?, ?, -1, ?, 0) ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "start = excluded.start, wall0 = excluded.wall0, upto = -1, gt_pos = excluded.gt_pos, finished = 0",
            (fingerprint, start, wall0, gt_pos),
        )

    def progress(self, upto: float, gt_pos: int | None) -> None:
        """Generation reached `upto`; written with the next commit (with its messages)."""
        self._progress = (upto, gt_pos)

    def finish_run(self) -> None:
        """The run ended cleanly: a restart starts a new run (and still drains the queue)."""
        self.commit()
        self._db.execute("UPDATE run_checkpoint SET finished = 1 WHERE id = 1")

    # --- buffered writes --------------------------------------------------------------------
    def add(self, device_id: str, seq: int, payload: bytes) -> None:
        self._added.append((device_id, seq, payload))
        self._next_seq[device_id] = seq + 1

    def ack(self, device_id: str, seq: int) -> None:
        self._acked.append((device_id, seq))

    def refuse(self, device_id: str, seq: int, reason: int) -> None:
        self._refused.append((reason, device_id, seq))

    @property
    def dirty(self) -> bool:
        return bool(self._added or self._acked or self._refused or self._progress)

    def commit(self) -> None:
        """Write everything buffered in one transaction."""
        if not self.dirty:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            if self._added:
                db.executemany(
                    "INSERT INTO outbox (device_id, seq, state, payload) VALUES (?, ?, 0, ?)",
                    self._added,
                )
                db.executemany(
                    "INSERT INTO device_seq (device_id, next_seq) VALUES (?, ?) "
                    "ON CONFLICT (device_id) DO UPDATE SET next_seq = max(next_seq, excluded.next_seq)",
                    list(self._next_seq.items()),
                )
            if self._acked:
                db.executemany("UPDATE outbox SET state = 1 WHERE device_id = ? AND seq = ? AND state = 0", self._acked)
            if self._refused:
                db.executemany("UPDATE outbox SET state = 2, reason = ? WHERE device_id = ? AND seq = ?", self._refused)
            if self._progress is not None:
                db.execute("UPDATE run_checkpoint SET upto = ?, gt_pos = ? WHERE id = 1", self._progress)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._added.clear()
        self._next_seq.clear()
        self._acked.clear()
        self._refused.clear()
        self._progress = None

    def prune(self, acked_upto: dict[str, int]) -> None:
        """Forget acknowledged messages older than the last `keep_acked` of each device."""
        rows = [(d, seq - self.keep_acked) for d, seq in acked_upto.items() if seq > self.keep_acked]
        if rows:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM outbox WHERE device_id = ? AND seq <= ? AND state = 1", rows)
            self._db.execute("COMMIT")

    # --- reads ------------------------------------------------------------------------------
    def pending_after(self, device_id: str, seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._db.execute(
            "SELECT seq, payload FROM outbox WHERE device_id = ? AND state = 0 AND seq > ? ORDER BY seq LIMIT ?",
            (device_id, seq, limit),
        ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    def history_from(self, device_id: str, from_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Messages from `from_seq` on that are still held (pending or acknowledged)."""
        rows = self._db.execute(
            "SELECT seq, payload FROM outbox WHERE device_id = ? AND seq >= ? AND state IN (0, 1) ORDER BY seq LIMIT ?",
            (device_id, from_seq, limit),
        ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    def count_pending(self, device_id: str) -> int:
        row = self._db.execute("SELECT count(*) FROM outbox WHERE device_id = ? AND state = 0", (device_id,)).fetchone()
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        """Rows per state (for summaries and tests)."""
        names = {PENDING: "pending", ACKED: "acked", REFUSED: "refused"}
        result = dict.fromkeys(names.values(), 0)
        for state, n in self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
            result[names.get(int(state), str(state))] = int(n)
        return result

    def close(self) -> None:
        self.commit()
        self._db.close()
