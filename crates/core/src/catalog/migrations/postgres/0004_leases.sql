-- Leases of scheduled jobs (ARCHITECTURE.md, "The catalog"): an instance runs a job only while it holds the
-- job's advisory lock and only once `until` (its start plus the job's period) has passed, so instances with
-- the same schedule run each job once per period between them.
CREATE TABLE leases (
    ns BIGINT NOT NULL REFERENCES namespaces (id),
    name TEXT NOT NULL,
    until TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (ns, name)
);
