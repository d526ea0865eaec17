"""Detection in the worker: the Faust lane that runs the pure detectors of `core.detectors`
over batches of readings, keeps each patient's detector state in a table and publishes the
detections (pipeline, agents, state store, the device-class lookup)."""
