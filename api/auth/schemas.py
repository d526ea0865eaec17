"""Models of the auth domain: the stored user, the authenticated principal, and the
token and user answers at the HTTP boundary."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

Role = Literal["patient", "clinician", "admin", "ops"]


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


class TokenRead(BaseModel):
    """Answer of the token endpoints (RFC 6749 §5.1)."""

    access_token: str = Field(description="JWT to send as `Authorization: Bearer <token>`")
    token_type: Annotated[Literal["bearer"], Field(description="Always `bearer`")] = "bearer"  # noqa: S105 - the OAuth2 token type, not a password
    expires_in: int = Field(description="Seconds until the access token expires")


class UserRead(BaseModel):
    """The current user."""

    id: uuid.UUID = Field(description="User id (the `sub` of the token)")
    username: str = Field(description="Login name")
    display_name: str = Field(description="Name shown to people")
    role: Role = Field(description="patient, clinician, admin or ops")
    patient_id: str | None = Field(description="The patient this user is, for patient users; null otherwise")
