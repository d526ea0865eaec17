"""Who viewed my record: a patient's access log, their flags, the privacy officer's queue (ADR 0025)."""
