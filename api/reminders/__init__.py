"""A patient's own reminders and profile (ADR 0026)."""
