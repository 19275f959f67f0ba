-- The chunk index (ARCHITECTURE.md, "The catalog"). One namespace per (vault, tenant); one row per (chunk,
-- index file) that names it, so dropping a file keeps the chunk if another file names it too.
CREATE TABLE namespaces (
    id BIGSERIAL PRIMARY KEY,
    vault TEXT NOT NULL,
    tenant TEXT NOT NULL,
    UNIQUE (vault, tenant)
);
CREATE TABLE index_files (
    id BIGSERIAL PRIMARY KEY,
    ns BIGINT NOT NULL REFERENCES namespaces (id),
    name TEXT NOT NULL,
    UNIQUE (ns, name)
);
CREATE TABLE chunks (
    ns BIGINT NOT NULL,
    chunk BYTEA NOT NULL,
    file BIGINT NOT NULL REFERENCES index_files (id),
    pack BYTEA NOT NULL,
    blob_type SMALLINT NOT NULL,
    codec SMALLINT NOT NULL,
    blob_index BIGINT NOT NULL,
    pack_offset BIGINT NOT NULL,
    length BIGINT NOT NULL,
    raw_length BIGINT NOT NULL,
    base BYTEA,
    PRIMARY KEY (ns, chunk, file)
);
CREATE INDEX chunks_by_file ON chunks (file);
-- Stored bytes and distinct chunks per namespace, kept by the same transactions that add and drop entries.
CREATE TABLE usage (
    ns BIGINT PRIMARY KEY REFERENCES namespaces (id),
    bytes BIGINT NOT NULL,
    chunks BIGINT NOT NULL
);
