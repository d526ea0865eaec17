"""Check-ins: observations people enter (today the ACVPU level of consciousness), published to
the readings topic like a device's readings."""
