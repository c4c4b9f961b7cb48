-- What of an agent's sign-in survives a restart: the SIP credentials issued last (random,
-- per sign-in, replaced on every request), Ready or Not ready with its reason, and the phone's
-- registration while it lasts. A router that starts puts them back, so a phone registered
-- before a crash keeps taking calls without signing in again.
CREATE TABLE agent_sessions (
    tenant            TEXT NOT NULL,
    upn               TEXT NOT NULL,          -- lower case
    username          TEXT NOT NULL,
    password          TEXT NOT NULL,
    ready             INTEGER NOT NULL,       -- 0 or 1
    reason            TEXT,
    aor               TEXT,
    contact           TEXT,
    registered_until  INTEGER,                -- Unix seconds
    PRIMARY KEY (tenant, upn)
);
