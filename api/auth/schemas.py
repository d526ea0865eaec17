"""Models of the auth domain: the stored user, the authenticated principal, and the
token and user answers at the HTTP boundary."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["patient", "clinician", "admin", "ops"]
# NIST SP 800-63B §5.1.1: at least 8 characters, accept long passphrases; the upper bound
# keeps one request from costing more than a normal argon2 run.
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class User:
    """A row of `users`."""

    id: uuid.UUID
    username: str
    password_hash: str
    role: str
    display_name: str
    patient_id: str | None
    disabled: bool


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request (user as stored now, session from the token)."""

    user_id: uuid.UUID
    username: str
    role: str
    display_name: str
    patient_id: str | None
    session_id: str
    auth_time: datetime
    client_ip: str


@dataclass(frozen=True, slots=True)
class Session:
    """A row of `sessions`: one password login and the refreshes that followed it."""

    id: str
    user_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


@dataclass(frozen=True, slots=True)
class RefreshTokenRow:
    """A row of `refresh_tokens` (the token itself is never stored, only its digest)."""

    session_id: str
    expires_at: datetime
    replaced_at: datetime | None


class TokenRead(BaseModel):
    """Answer of the token endpoints (RFC 6749 §5.1)."""

    access_token: str = Field(description="JWT to send as `Authorization: Bearer <token>`")
    token_type: Annotated[Literal["bearer"], Field(description="Always `bearer`")] = "bearer"  # noqa: S105 - the OAuth2 token type, not a password
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str = Field(
        description="Single-use token for `POST /auth/refresh`; each refresh answers a new one and "
        "the old one stops working (presenting it again ends the session)"
    )
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires (idle limit)")


class PasswordChange(BaseModel):
    """Body of a password change."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH, description="The password now")
    new_password: str = Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=f"The new password, {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
    )


class UserRead(BaseModel):
    """The current user."""

    id: uuid.UUID = Field(description="User id (the `sub` of the token)")
    username: str = Field(description="Login name")
    display_name: str = Field(description="Name shown to people")
    role: Role = Field(description="patient, clinician, admin or ops")
    patient_id: str | None = Field(description="The patient this user is, for patient users; null otherwise")
