-- Versions of state that server instances cache and must check before use (ARCHITECTURE.md, "The catalog"):
-- `buckets` is the last bucket record any instance of the tenant appended, published under the tenant's
-- advisory lock on that state.
CREATE TABLE counters (
    ns BIGINT NOT NULL REFERENCES namespaces (id),
    name TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (ns, name)
);
