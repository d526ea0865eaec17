"""Code shared by every process of the platform: settings, the vital-sign catalogue,
wire schemas, database access and migrations, broker administration, logging and metrics.

This package imports nothing else of ours (enforced by import-linter)."""
