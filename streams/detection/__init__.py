"""Detection: pure functions over a patient's readings, care plan and saved state.

Faust agents call `service.detect_readings` once per batch of one patient's readings and
`service.detect_due` on a timer; each returns the new state and a list of `model.Detection`.
Nothing here does I/O. The rules follow /work/shared/reference/clinical.md (the project's
`reference/clinical.md`), cited in each module.
"""
