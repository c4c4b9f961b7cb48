-- Agents added, changed or removed through the API (/v1/config/tenants/{tenant}/agents).
-- They apply over the configuration file at every start, so what an administrator changed
-- survives a restart. `settings` is JSON (switchboard_api::AgentSettings); NULL means the
-- agent was removed.
CREATE TABLE agent_settings (
    tenant      TEXT NOT NULL,
    upn         TEXT NOT NULL,                -- lower case
    settings    TEXT,                         -- JSON, or NULL: removed
    updated_at  TEXT NOT NULL,                -- RFC 3339, UTC
    PRIMARY KEY (tenant, upn)
);
