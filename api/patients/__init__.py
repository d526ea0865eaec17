"""The patients API: my patients, the patient summary and observation rollups (ADR 0023)."""
