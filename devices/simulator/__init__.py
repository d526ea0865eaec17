"""The device simulator: a population of simulated patients wearing real MQTT v5 devices.

Physiology (numpy, per cohort) drives continuous wearables and spot devices; scenarios
place deteriorations, device faults and outages on patients' timelines; each device is
its own MQTT connection with a store-and-forward queue on disk; a ground-truth log records
every message sent and every detection a correct platform owes. Entry point:
`python -m devices.simulator` (`devices.simulator.cli:app`, mounted as `rpm sim`).
"""
