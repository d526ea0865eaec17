"""The alert service (`python -m alerts`): turns detections from `rpm.detections.v1` into alerts
with one open alert per (patient, rule), escalation on timers, quiet hours that never delay
critical alerts, and audited transitions (rules: core/alert_lifecycle.py; ADR 0018)."""
