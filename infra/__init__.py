"""What runs the system: the local stack runner, the `rpm` command line, broker and
database configuration, Grafana/Prometheus provisioning and deployment files."""
