"""The clinician and patient HTTP API (FastAPI): authentication, access control by care
team, audited reads of health data, and the health/readiness probes ops rely on.

Build the app with `api.app.create_app()`; run it with `python -m api`.
"""
