"""Fixtures of the page tests: the API test fixtures (settings, in-process app, users)."""

from tests.api.conftest import (  # noqa: F401 - fixtures re-exported for pytest
    anyio_backend,
    client,
    make_patient,
    make_user,
    password_hash,
    settings,
    settings_for,
)
