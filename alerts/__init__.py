"""The alert service: turns detections into alerts with one open alert per (patient, rule),
escalation on timers, quiet hours that never mute critical alerts, and audited transitions.
(Consumes `rpm.detections.v1`; built in its own issue.)"""
