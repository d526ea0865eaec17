"""Fixtures of the patient-portal tests (issue 12): the API test fixtures, re-exported."""

from tests.api.conftest import (  # noqa: F401 - fixtures re-exported for pytest
    add_observations,
    anyio_backend,
    audit_rows,
    auth_headers,
    client,
    login,
    make_care_team,
    make_patient,
    make_user,
    password_hash,
    serve,
    settings,
    settings_for,
)
