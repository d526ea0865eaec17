"""Stream processing (faust-streaming): store every reading once in TimescaleDB and run
the detectors over each patient's recent state."""
