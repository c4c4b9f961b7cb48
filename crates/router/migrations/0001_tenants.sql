-- Tenants: the organisations one router serves. sip_domain selects the tenant for a call.
CREATE TABLE tenants (
    id              TEXT PRIMARY KEY NOT NULL,   -- UUID, text form
    name            TEXT NOT NULL,
    sip_domain      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    entra_tenant_id TEXT,
    created_at      TEXT NOT NULL                -- RFC 3339, UTC
);
