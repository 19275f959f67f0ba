-- Quota reservations (ARCHITECTURE.md, "The catalog"): bytes a write in flight holds against its tenant's
-- max_bytes until its index file is in, checked and recorded in one transaction. `expires` (milliseconds since
-- 1970) gives back what a writer killed mid-upload held.
CREATE TABLE reservations (
    id INTEGER PRIMARY KEY,
    ns INTEGER NOT NULL REFERENCES namespaces (id),
    bytes INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE INDEX reservations_by_ns ON reservations (ns);
