-- Login sessions and their rotating refresh tokens (ADR 0014).
-- A session is opened by a password login and ends by logout, expiry, revocation (password
-- change, account disabled) or the reuse of a refresh token that was already rotated away.
-- Access tokens name their session (`sid`); the API refuses tokens of an ended session.

CREATE TABLE sessions (
    id              text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL,           -- the password login (auth_time)
    expires_at      timestamptz NOT NULL,           -- absolute limit, whatever the activity
    last_refreshed_at timestamptz NOT NULL,
    client_ip       text NOT NULL DEFAULT '',
    revoked_at      timestamptz,
    revoked_reason  text CHECK (revoked_reason IN
                      ('logout', 'password_changed', 'account_disabled', 'refresh_token_reuse')),
    CHECK (expires_at > created_at),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Only a digest of each refresh token is stored. A token is used once: refreshing marks it
-- replaced and issues the next; presenting a replaced token again revokes the session.
CREATE TABLE refresh_tokens (
    token_hash   bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id   text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    replaced_at  timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Disabling an account ends its sessions, whichever tool and role disabled it (SECURITY
-- DEFINER: the role updating `users` needs no rights on `sessions` for this).
CREATE FUNCTION sessions_end_when_user_disabled() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE sessions SET revoked_at = now(), revoked_reason = 'account_disabled'
    WHERE user_id = NEW.id AND revoked_at IS NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_disabled_ends_sessions AFTER UPDATE OF disabled ON users
    FOR EACH ROW WHEN (NEW.disabled AND NOT OLD.disabled)
    EXECUTE FUNCTION sessions_end_when_user_disabled();

GRANT SELECT, INSERT, UPDATE ON sessions, refresh_tokens TO rpm_app;
