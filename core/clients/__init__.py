"""I/O clients the processes share: MQTT 5 (`mqtt5`: codec, connections, the ingest bridge's
session) and the MQTT broker's dynamic-security administration (`broker_admin`). The rest of
`core/` is vocabulary and pure rules; what talks to a network lives here."""
