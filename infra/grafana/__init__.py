"""Grafana as code: datasources, dashboards and ops alert rules built with grafana-foundation-sdk,
written to `infra/grafana/provisioning/` (`rpm grafana generate`) and uploaded to a running
Grafana (`rpm grafana push`). ADR 0029 says why and which SDK line."""
