"""The clinician's web pages: server-rendered Jinja2 templates over the same services as the
JSON API, authenticated by an HttpOnly session cookie with a CSRF token on every form (ADR 0022)."""
