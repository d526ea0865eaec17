"""Storage of validated readings: batched COPY into staging, then an idempotent insert."""
