"""The detection rules, one module per rule family: out-of-range limits, NEWS2 monitoring, BP
crisis confirmation, heart-failure weight gain, glucose levels, personal baseline, adherence
and device silence (ADR 0033).

Each is a pure function over a patient's readings, care plan and saved state; the rules with
hysteresis keep their episodes with `core.detectors.episodes.EpisodeTracker`. Callers outside
`core.detectors` go through `core.detectors.service` (and `core.detectors.model` for what a
detection is).
"""
