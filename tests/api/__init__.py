"""Tests of the API process (tests mirror the source tree)."""
