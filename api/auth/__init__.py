"""Authentication: password login (OAuth2 password flow), short-lived JWT access tokens,
session limits, login rate limiting, and the current-user dependency every endpoint uses."""
