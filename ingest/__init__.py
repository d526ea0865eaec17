"""The ingest bridge: MQTT device messages in, validated and normalised readings out to
Kafka, every refused message dead-lettered with a reason."""
