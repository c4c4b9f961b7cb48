-- Callbacks callers asked for and the router has not yet made: kept so that a restart (or a
-- crash) does not lose them. A router that starts puts each back in its queue, in the place
-- its caller had, until it is made, given up, or expires. One JSON object per call (the
-- call's record id is the key).
CREATE TABLE pending_callbacks (
    id        TEXT PRIMARY KEY,
    tenant    TEXT NOT NULL,
    callback  TEXT NOT NULL
);
