"""SQL of the auth domain (table `users`)."""

from __future__ import annotations

import uuid

from psycopg.rows import class_row

from api.auth.schemas import User
from api.db import Conn

_USER_COLUMNS = "id, username, password_hash, role, display_name, patient_id, disabled"


async def get_user_by_username(conn: Conn, username: str) -> User | None:
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = %s", (username,))  # noqa: S608 - constant column list
        return await cur.fetchone()


async def get_user_by_id(conn: Conn, user_id: uuid.UUID) -> User | None:
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))  # noqa: S608 - constant column list
        return await cur.fetchone()


async def update_password_hash(conn: Conn, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))
