-- What was added, changed or removed through the configuration API (/v1/config/…): agents
-- and queues. Every start applies these over the configuration file, oldest first, so what an
-- administrator changed survives a restart. `settings` is JSON (switchboard_api's
-- AgentSettings or QueueSettings); NULL means the thing was removed.
CREATE TABLE config_changes (
    tenant      TEXT NOT NULL,
    kind        TEXT NOT NULL,                -- 'agent' or 'queue'
    name        TEXT NOT NULL,                -- an agent's UPN (lower case), a queue's name
    settings    TEXT,                         -- JSON, or NULL: removed
    updated_at  TEXT NOT NULL,                -- RFC 3339, UTC
    seq         INTEGER NOT NULL,             -- the order changes were made in
    PRIMARY KEY (tenant, kind, name)
);
