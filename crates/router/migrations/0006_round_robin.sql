-- Where each round-robin queue stopped: the agent (UPN, lower case) it offered its last call
-- to, so that after a restart the round goes on with the next agent rather than the first.
-- Written when it moves (once per offer at most), with the agents' sessions.
CREATE TABLE round_robin (
    tenant  TEXT NOT NULL,
    queue   TEXT NOT NULL,
    upn     TEXT NOT NULL,
    PRIMARY KEY (tenant, queue)
);
