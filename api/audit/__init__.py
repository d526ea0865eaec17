"""Audit trail: who did what to which patient's record, with what outcome (HIPAA §164.312(b))."""
