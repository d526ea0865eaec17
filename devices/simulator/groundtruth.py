"""The ground-truth log: JSON lines of everything the simulator did and what a correct
platform should make of it. Tests and benchmarks count lost and duplicated readings and
alert recall and precision against it.

Record kinds (field `kind`):
- `run`: start of a run (seed, speed, start, rate, worker, options);
- `patient`: a patient's cohort, devices, NEWS2 scale, oxygen and schedules (care-plan hints);
- `scenario`: a placed scenario with its window and `expect` list
  (`{"rule": <core.rules name>, "at": ..., "by": ...}`, `{"outcome": ...}`, `absent: true`);
  a scenario whose detections depend on the recorded values (sepsis: NEWS2 bands; hypoxia:
  SpO2 low) lists those rules in `expect_from_readings` and its detections come as `expect`
  records with the scenario's name as `cause`;
- `msg`: one message as published: `patient_id` plus every payload field
  (`device_id`, `seq`, `sent_at`, `readings`, `battery`), `fault` for in-band faults;
- `event`: a scheduled measurement or dose that did not happen, with its expected detection;
- `fault`, `duplicate`, `resend`: out-of-band publishes and the broker's answer;
- `resume`: a run picked up again after the simulator was killed (everything after the
  previous checkpoint was cut and is generated again, so each message appears once);
- `expect`: a detection the recorded values themselves imply, judged as they are generated
  (a glucometer reading beyond the glucose limits: cause `glucose_reading`; a NEWS2 band
  reached outside a scenario: `news2`; inside a scenario watching the readings: its name);
- `summary`: per device the last acknowledged seq and what was still queued at the end.
Times are RFC 3339 UTC in simulated time. With `--workers N` each worker writes its own
file (`NAME.wK.jsonl`); `read_records` reads them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

_encode = msgspec.json.Encoder().encode


def worker_path(path: Path, worker: int, workers: int) -> Path:
    if workers <= 1:
        return path
    return path.with_name(f"{path.stem}.w{worker}{path.suffix or '.jsonl'}")


class GroundTruth:
    """Append-only JSON-lines writer, flushed with every outbox commit."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("ab", buffering=1 << 20)

    @property
    def enabled(self) -> bool:
        return self._fh is not None

    def record(self, kind: str, **fields: Any) -> None:
        if self._fh is not None:
            self._fh.write(_encode({"kind": kind, **fields}) + b"\n")

    def message(self, patient_id: str, payload: bytes, fault: str | None = None) -> None:
        """The payload as sent, prefixed with the patient and the record kind."""
        if self._fh is None:
            return
        head = b'{"kind":"msg","patient_id":' + _encode(patient_id)
        if fault is not None:
            head += b',"fault":' + _encode(fault)
        self._fh.write(head + b"," + payload[1:] + b"\n")

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def position(self) -> int | None:
        """Bytes written so far (after `flush`): the resume point of a checkpoint."""
        return self._fh.tell() if self._fh is not None else None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def cut_back(path: Path, size: int | None) -> None:
    """Cut a ground-truth file back to `size` bytes (what a checkpoint covered)."""
    if size is not None and path.exists() and path.stat().st_size > size:
        with path.open("r+b") as fh:
            fh.truncate(size)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """All records of a ground-truth log (and of its per-worker siblings)."""
    paths = [path] if path.exists() else []
    paths += sorted(path.parent.glob(f"{path.stem}.w*{path.suffix or '.jsonl'}"))
    for p in paths:
        with p.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield msgspec.json.decode(line)


def messages_by_device(path: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """device_id -> seq -> `msg` record (the last one wins when a seq was rewritten)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in read_records(path):
        if rec.get("kind") == "msg":
            out.setdefault(rec["device_id"], {})[int(rec["seq"])] = rec
    return out
