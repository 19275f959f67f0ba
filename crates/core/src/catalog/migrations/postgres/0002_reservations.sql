-- Quota reservations (ARCHITECTURE.md, "The catalog"): bytes a write in flight on any instance holds against
-- its tenant's max_bytes until its index file is in, checked and recorded in one transaction under the
-- tenant's usage row lock. `expires` gives back what an instance killed mid-upload held.
CREATE TABLE reservations (
    id BIGSERIAL PRIMARY KEY,
    ns BIGINT NOT NULL REFERENCES namespaces (id),
    bytes BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
CREATE INDEX reservations_by_ns ON reservations (ns);
