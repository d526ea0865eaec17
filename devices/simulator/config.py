"""Run configuration: the credentials file (devices and patients) and the options of a run.

Credentials file (JSON), as written by `rpm sim provision`:
`{"devices": [{"device_id", "patient_id", "device_class", "password"}, ...],
  "patients": [{"patient_id", "cohort", "on_oxygen"}, ...]}` (patients optional; cohort
defaults healthy; `on_oxygen` is the prescription the care plan states, drawn from the
seed when absent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from devices.simulator.physiology import COHORTS, PatientSpec
from devices.simulator.scenarios import ScenarioError, parse_duration
from devices.simulator.schedule import DEVICE_SPECS


class ConfigError(ValueError):
    """The credentials file or an option is unusable; the message says why."""


class DeviceEntry(msgspec.Struct, forbid_unknown_fields=False):
    device_id: str
    patient_id: str
    device_class: str = "wearable"
    password: str = ""


class PatientEntry(msgspec.Struct, forbid_unknown_fields=False):
    patient_id: str
    cohort: str = "healthy"
    on_oxygen: bool | None = None


class CredentialsFile(msgspec.Struct, forbid_unknown_fields=False):
    devices: list[DeviceEntry]
    patients: list[PatientEntry] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Roster:
    """Patients and their devices, in file order (which fixes the worker split)."""

    patients: list[PatientSpec]
    devices: list[DeviceEntry]

    @classmethod
    def from_credentials(cls, creds: CredentialsFile) -> Roster:
        cohorts = {p.patient_id: p.cohort for p in creds.patients}
        oxygen = {p.patient_id: p.on_oxygen for p in creds.patients}
        order: list[str] = [p.patient_id for p in creds.patients]
        for d in creds.devices:
            if d.device_class not in DEVICE_SPECS:
                raise ConfigError(f"device {d.device_id}: unknown device class {d.device_class!r}")
            if d.patient_id not in cohorts:
                cohorts[d.patient_id] = "healthy"
                order.append(d.patient_id)
        for pid, cohort in cohorts.items():
            if cohort not in COHORTS:
                raise ConfigError(f"patient {pid}: unknown cohort {cohort!r}; known: {', '.join(COHORTS)}")
        seen: set[str] = set()
        for d in creds.devices:
            if d.device_id in seen:
                raise ConfigError(f"device {d.device_id} appears twice")
            seen.add(d.device_id)
        return cls([PatientSpec(p, cohorts[p], oxygen.get(p)) for p in order], list(creds.devices))

    def limit(self, n_patients: int | None) -> Roster:
        if n_patients is None or n_patients >= len(self.patients):
            return self
        keep = self.patients[:n_patients]
        ids = {p.patient_id for p in keep}
        return Roster(keep, [d for d in self.devices if d.patient_id in ids])


def load_credentials(path: Path) -> Roster:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror or exc}") from exc
    try:
        creds = msgspec.json.decode(raw, type=CredentialsFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"credentials file {path} is not valid: {exc}") from exc
    if not creds.devices:
        raise ConfigError(f"credentials file {path} lists no devices")
    return Roster.from_credentials(creds)


def write_credentials(path: Path, roster: Roster) -> None:
    body = {
        "devices": [msgspec.structs.asdict(d) for d in roster.devices],
        "patients": [
            {"patient_id": p.patient_id, "cohort": p.cohort, "on_oxygen": p.on_oxygen} for p in roster.patients
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(body), indent=2) + b"\n")
    path.chmod(0o600)  # it holds device secrets


_RELATIVE = re.compile(r"^[+-]")
MAX_DEFAULT_LEAD_S = 86400.0


def parse_start(text: str | None, now: float, speed: float, duration: float) -> float:
    """Simulated start: ISO 8601, or relative to now ('-2d').

    By default: now at speed <= 1; faster, early enough that simulated time reaches the wall
    clock when the run ends, but at most one day back (`provision` backdates bindings and
    consent two days): a longer run catches up and then goes on in real time.
    """
    if text:
        if _RELATIVE.match(text):
            try:
                return now + parse_duration(text)
            except ScenarioError as exc:
                raise ConfigError(str(exc)) from exc
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"--start: not an ISO 8601 time or offset like -2d: {text!r}") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if speed <= 1.0:
        return now
    lead = duration * (speed - 1.0) if duration > 0 else MAX_DEFAULT_LEAD_S
    return now - min(lead, MAX_DEFAULT_LEAD_S)


@dataclass(slots=True)
class RunOptions:
    """Everything a worker needs to run (picklable for --workers)."""

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 18830
    rate: float | None = None
    duration: float = 0.0
    speed: float = 1.0
    seed: int = 1
    start: float = 0.0
    start_explicit: bool = False  # --start given (else a resumed run keeps its own start)
    wall0: float = 0.0
    interval: float = 5.0
    scenarios: list[str] = field(default_factory=list)
    ground_truth: Path | None = None
    queue_dir: Path = Path(".rpm/simulator-queue")
    window: int = 32
    keepalive: int = 60
    connect_timeout: float = 15.0
    drain_timeout: float = 2.0
    dry_run: bool = False
    workers: int = 1
    keep_acked: int = 256
