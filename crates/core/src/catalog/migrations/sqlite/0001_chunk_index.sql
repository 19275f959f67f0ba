-- The chunk index (ARCHITECTURE.md, "The catalog"). One namespace per (vault, tenant); one row per (chunk,
-- index file) that names it, so dropping a file keeps the chunk if another file names it too.
CREATE TABLE namespaces (
    id INTEGER PRIMARY KEY,
    vault TEXT NOT NULL,
    tenant TEXT NOT NULL,
    UNIQUE (vault, tenant)
);
CREATE TABLE index_files (
    id INTEGER PRIMARY KEY,
    ns INTEGER NOT NULL REFERENCES namespaces (id),
    name TEXT NOT NULL,
    UNIQUE (ns, name)
);
CREATE TABLE chunks (
    ns INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    file INTEGER NOT NULL REFERENCES index_files (id),
    pack BLOB NOT NULL,
    blob_type INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    blob_index INTEGER NOT NULL,
    pack_offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    raw_length INTEGER NOT NULL,
    base BLOB,
    PRIMARY KEY (ns, chunk, file)
) WITHOUT ROWID;
CREATE INDEX chunks_by_file ON chunks (file);
-- Stored bytes and distinct chunks per namespace, kept by the same transactions that add and drop entries.
CREATE TABLE usage (
    ns INTEGER PRIMARY KEY REFERENCES namespaces (id),
    bytes INTEGER NOT NULL,
    chunks INTEGER NOT NULL
);
