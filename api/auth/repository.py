"""SQL of the auth domain (tables `users`, `sessions`, `refresh_tokens`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg.rows import class_row

from api.auth.schemas import RefreshTokenRow, Session, User
from api.db import Conn

_USER_COLUMNS = "id, username, password_hash, role, display_name, patient_id, disabled"
_SESSION_COLUMNS = "id, user_id, created_at, expires_at, revoked_at, revoked_reason"


async def get_user_by_username(conn: Conn, username: str) -> User | None:
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = %s", (username,))  # noqa: S608 - constant column list
        return await cur.fetchone()


async def get_user_by_id(conn: Conn, user_id: uuid.UUID) -> User | None:
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))  # noqa: S608 - constant column list
        return await cur.fetchone()


async def get_user_and_session(conn: Conn, user_id: uuid.UUID, session_id: str) -> tuple[User | None, Session | None]:
    """The user and, when it belongs to them, the session, in one query (one round trip per
    authenticated request)."""
    u = ", ".join(f"u.{c}" for c in _USER_COLUMNS.split(", "))
    s = ", ".join(f"s.{c}" for c in _SESSION_COLUMNS.split(", "))
    cur = await conn.execute(
        f"SELECT {u}, {s} FROM users AS u LEFT JOIN sessions AS s ON s.id = %s AND s.user_id = u.id "  # noqa: S608 - constant column lists
        "WHERE u.id = %s",
        (session_id, user_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None, None
    width = len(_USER_COLUMNS.split(", "))
    return User(*row[:width]), None if row[width] is None else Session(*row[width:])


async def update_password_hash(conn: Conn, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))


async def get_session(conn: Conn, session_id: str) -> Session | None:
    async with conn.cursor(row_factory=class_row(Session)) as cur:
        await cur.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = %s", (session_id,))  # noqa: S608 - constant column list
        return await cur.fetchone()


async def create_session(
    conn: Conn, session_id: str, user_id: uuid.UUID, created_at: datetime, expires_at: datetime, client_ip: str
) -> None:
    await conn.execute(
        """
        INSERT INTO sessions (id, user_id, created_at, expires_at, last_refreshed_at, client_ip)
        VALUES (%s, %s, %s, %s, %s, %s)
        """,
        (session_id, user_id, created_at, expires_at, created_at, client_ip),
    )


async def add_refresh_token(
    conn: Conn, token_hash: bytes, session_id: str, issued_at: datetime, expires_at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES (%s, %s, %s, %s)",
        (token_hash, session_id, issued_at, expires_at),
    )


async def claim_refresh_token(conn: Conn, token_hash: bytes, now: datetime) -> RefreshTokenRow | None:
    """Mark a current refresh token replaced and return it; None when it is not current.

    One UPDATE, so of two refreshes racing with one token exactly one wins.
    """
    async with conn.cursor(row_factory=class_row(RefreshTokenRow)) as cur:
        await cur.execute(
            """
            UPDATE refresh_tokens SET replaced_at = %s
            WHERE token_hash = %s AND replaced_at IS NULL
            RETURNING session_id, expires_at, replaced_at
            """,
            (now, token_hash),
        )
        return await cur.fetchone()


async def find_refresh_token(conn: Conn, token_hash: bytes) -> RefreshTokenRow | None:
    async with conn.cursor(row_factory=class_row(RefreshTokenRow)) as cur:
        await cur.execute(
            "SELECT session_id, expires_at, replaced_at FROM refresh_tokens WHERE token_hash = %s", (token_hash,)
        )
        return await cur.fetchone()


async def touch_session(conn: Conn, session_id: str, now: datetime) -> None:
    await conn.execute("UPDATE sessions SET last_refreshed_at = %s WHERE id = %s", (now, session_id))


async def revoke_session(conn: Conn, session_id: str, reason: str, now: datetime) -> bool:
    """End one session; False when it had ended already."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s WHERE id = %s AND revoked_at IS NULL",
        (now, reason, session_id),
    )
    return cur.rowcount > 0


async def revoke_user_sessions(conn: Conn, user_id: uuid.UUID, reason: str, now: datetime) -> int:
    """End every open session of a user; returns how many."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s WHERE user_id = %s AND revoked_at IS NULL",
        (now, reason, user_id),
    )
    return cur.rowcount
