-- Call detail records: one row per call that reached the SIP edge, written when it arrives
-- (outcome in_progress) and again as it changes and ends. The record itself is JSON
-- (switchboard_api::CallRecord); the columns beside it are what lists filter and sort on.
-- A router that starts finds rows still in_progress from a run that was cut short and
-- closes them as interrupted.
CREATE TABLE calls (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant      TEXT NOT NULL,
    started_at  TEXT NOT NULL,                -- RFC 3339, UTC
    outcome     TEXT NOT NULL,
    record      TEXT NOT NULL                 -- JSON
);
CREATE INDEX calls_by_tenant_and_start ON calls (tenant, started_at);
CREATE INDEX calls_by_outcome ON calls (outcome);
