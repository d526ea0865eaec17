"""The clinician's alerts: inbox, one alert with its history, a person's moves, precision
figures and the live stream (ADR 0020)."""
