"""Detection: pure functions over a patient's readings, care plan and saved state.

The stream worker's Faust agents (streams/detection) call `service.detect_readings` once
per batch of one patient's readings and `service.detect_due` on a timer; the API's care-plan
what-if replays stored readings through the same `detect_readings` (ADR 0021). Each call
returns the new state and a list of `model.Detection`. Nothing here does I/O. The rules
follow /work/shared/reference/clinical.md (the project's `reference/clinical.md`), cited in
each module.

Layout (ADR 0033): `service` and `model` are the public face; `rules/` holds one module per
rule family; `episodes.EpisodeTracker` is the raise → hold → clear bookkeeping the rules with
hysteresis share; `news2` is the NEWS2 scoring table.
"""
