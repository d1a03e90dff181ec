"""The bank's DuckDB schema, as an ordered list of migrations applied on open.

Each migration runs in its own transaction together with the row that records it in `schema_version`, so a bank is
always at exactly one schema version. Add a migration by appending to `MIGRATIONS`; never edit a released one.

Tables (version 1):
- `tasks`: the task suite (description, paraphrases, labels, how to rebuild the data).
- `adapters`: one row per adapter; `seq` is the integer id FAISS indexes use; `sha256` is the checksum of the
  stored (canonical) tensors and config (`LoraAdapter.sha256`), unique so a duplicate import is detected.
- `tensors`: per adapter, variant ("canonical" or "original"), module and factor ("A"/"B"): raw bytes as a BLOB
  with shape, dtype and a sha256 over all three (version 3; `store.blobs.blob_checksum`); keyed by `blob_id`
  (version 2, see below) for point lookups.
- `embeddings`: per adapter and space ("text", "weight"): a float32 vector as a BLOB.
- `index_versions`: every FAISS index written by `reindex()` (file, method, size, checksum, highest `seq` covered).
- `meta`: key/value settings of the bank (e.g. the text encoder its embeddings came from).

Tensor BLOBs are written uncompressed (see `CONNECTION_CONFIG`): with DuckDB's default BLOB compression a
`WHERE adapter_id = ?` lookup scanned the table (0.8 ms for an early row, 57 ms for a late one among 1,000 rows of
100 KB, measured with DuckDB 2.0.1); uncompressed, every lookup took about 0.3 ms. The layout is decided when data is
checkpointed, so the setting must be in force on every connection that writes.
"""

from __future__ import annotations

import logging

import duckdb

from loragen.bank.errors import BankError

logger = logging.getLogger(__name__)

# DuckDB's memory limit on a bank connection (`Bank.open(memory_limit=...)`, the service's LORAGEN_BANK_MEMORY_LIMIT).
# DuckDB's own default is 80% of RAM, and what it may hold scales with it (its write buffer is 20% of the limit per
# thread: 1.2 GiB here). An upload-only soak grew +45 MB/min under the default, +29 MB/min under this limit
# (bench/results/soak_single_routes.json). The bank's queries are point lookups and small scans; bigger work (a
# migration over every tensor) spills to disk.
DEFAULT_MEMORY_LIMIT = "256MB"
# Applied to every connection: keeps BLOB segments uncompressed so point lookups stay O(1) (see module docstring),
# and bounds DuckDB's memory.
CONNECTION_CONFIG: dict[str, str] = {"force_compression": "uncompressed", "memory_limit": DEFAULT_MEMORY_LIMIT}

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema: tasks, adapters, tensors, embeddings, index versions, meta",
        [
            """CREATE TABLE tasks (
                name VARCHAR PRIMARY KEY,
                description VARCHAR NOT NULL,
                labels VARCHAR NOT NULL,             -- JSON list
                paraphrases VARCHAR NOT NULL,        -- JSON list
                heldout_paraphrases VARCHAR NOT NULL,-- JSON list
                family VARCHAR NOT NULL,
                split VARCHAR NOT NULL,
                data_ref VARCHAR NOT NULL            -- JSON object
            )""",
            "CREATE SEQUENCE adapter_seq START 1",
            """CREATE TABLE adapters (
                id VARCHAR PRIMARY KEY,
                seq BIGINT NOT NULL UNIQUE,
                base_model VARCHAR NOT NULL,
                r INTEGER NOT NULL,
                lora_alpha DOUBLE NOT NULL,
                target_modules VARCHAR NOT NULL,     -- JSON list
                fan_in_fan_out BOOLEAN NOT NULL,
                use_rslora BOOLEAN NOT NULL,
                canonical BOOLEAN NOT NULL,
                has_original BOOLEAN NOT NULL,
                n_modules INTEGER NOT NULL,
                task VARCHAR,
                description VARCHAR,
                kind VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                metrics VARCHAR NOT NULL,            -- JSON object
                metadata VARCHAR NOT NULL,           -- JSON object
                sha256 VARCHAR NOT NULL UNIQUE,
                original_sha256 VARCHAR
            )""",
            "CREATE INDEX adapters_task ON adapters(task)",
            """CREATE TABLE tensors (
                adapter_id VARCHAR NOT NULL,
                variant VARCHAR NOT NULL,            -- 'canonical' | 'original'
                module VARCHAR NOT NULL,
                factor VARCHAR NOT NULL,             -- 'A' | 'B'
                dtype VARCHAR NOT NULL,
                shape VARCHAR NOT NULL,              -- JSON list
                sha256 VARCHAR NOT NULL,
                data BLOB NOT NULL,
                PRIMARY KEY (adapter_id, variant, module, factor)
            )""",
            """CREATE TABLE embeddings (
                adapter_id VARCHAR NOT NULL,
                space VARCHAR NOT NULL,              -- 'text' | 'weight'
                model VARCHAR NOT NULL,
                dim INTEGER NOT NULL,
                vector BLOB NOT NULL,                -- float32, L2-normalised
                PRIMARY KEY (adapter_id, space)
            )""",
            """CREATE TABLE index_versions (
                space VARCHAR NOT NULL,
                version INTEGER NOT NULL,
                file VARCHAR NOT NULL,               -- name relative to the index directory
                method VARCHAR NOT NULL,
                params VARCHAR NOT NULL,             -- JSON object
                ntotal BIGINT NOT NULL,
                max_seq BIGINT NOT NULL,
                sha256 VARCHAR NOT NULL,
                duration_s DOUBLE NOT NULL,
                created_at TIMESTAMP NOT NULL,
                PRIMARY KEY (space, version)
            )""",
            "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        ],
    ),
]

# Version 2: tensors keyed by an integer `blob_id` = adapter seq * 65536 + position, so `Bank.get` reads each BLOB
# with a primary-key equality lookup. Measured with DuckDB 2.0.1, 4 BLOBs of 24/98 KB per adapter: a `WHERE
# adapter_id = ?` scan (also with `seq = ?`, BETWEEN or IN) took 0.3 ms per adapter right after reopening but
# 6-40 ms in a live session that had just written 400-800 adapters (the service's case), growing with the table;
# `WHERE blob_id = ?` on the primary key stayed at 0.25-0.35 ms per BLOB in every state up to 1,200 adapters.
BLOBS_PER_ADAPTER = 65536
MIGRATIONS.append(
    (
        2,
        "tensors keyed by integer blob_id (primary-key point lookups)",
        [
            """CREATE TABLE tensors_v2 (
                blob_id BIGINT PRIMARY KEY,          -- adapters.seq * 65536 + position (canonical first)
                adapter_id VARCHAR NOT NULL,
                variant VARCHAR NOT NULL,
                module VARCHAR NOT NULL,
                factor VARCHAR NOT NULL,
                dtype VARCHAR NOT NULL,
                shape VARCHAR NOT NULL,
                sha256 VARCHAR NOT NULL,
                data BLOB NOT NULL
            )""",
            """INSERT INTO tensors_v2
               SELECT a.seq * 65536 + row_number() OVER (
                          PARTITION BY t.adapter_id
                          ORDER BY CASE t.variant WHEN 'canonical' THEN 0 ELSE 1 END, t.module, t.factor) - 1,
                      t.adapter_id, t.variant, t.module, t.factor, t.dtype, t.shape, t.sha256, t.data
               FROM tensors t JOIN adapters a ON a.id = t.adapter_id""",
            "DROP TABLE tensors",
            "ALTER TABLE tensors_v2 RENAME TO tensors",
        ],
    )
)

# Version 3: a tensor's sha256 covers its dtype and shape as well as its bytes (`store.blobs.blob_checksum`:
# sha256 of "<dtype>;<shape JSON>;" followed by the bytes), so a changed dtype or shape column is caught before the
# bytes are decoded. Rows whose bytes still match their version-2 checksum get the new one; a row that did not match
# keeps its old value, which matches neither rule, so reading it still raises `ChecksumError`.
MIGRATIONS.append(
    (
        3,
        "tensor checksums cover dtype, shape and bytes",
        [
            "UPDATE tensors SET sha256 = sha256(encode(dtype || ';' || shape || ';') || data) "
            "WHERE sha256 = sha256(data)",
        ],
    )
)

# Version 4: tasks carry their own data. A user's task (imported from a manifest) has no provider that can rebuild
# its examples, so they are stored with it: one row per example, `label` for classification, `output` for
# generation (exactly one of the two is set). Task records with data say so in their data_ref
# ({"provider": "bank"}, `bank.tasks.STORED`).
MIGRATIONS.append(
    (
        4,
        "task examples stored in the bank",
        [
            """CREATE TABLE task_examples (
                task VARCHAR NOT NULL,
                split VARCHAR NOT NULL,           -- train | val | test
                position INTEGER NOT NULL,
                input VARCHAR NOT NULL,
                label INTEGER,                    -- classification: the label index
                output VARCHAR,                   -- generation: the reference output
                PRIMARY KEY (task, split, position)
            )""",
        ],
    )
)

LATEST_VERSION = MIGRATIONS[-1][0]


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of an open bank (0 for an empty database)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration newer than the bank's version, each in one transaction.

    Returns:
        The schema version after migrating.

    Raises:
        BankError: the bank was written by a newer loragen (its version is above `LATEST_VERSION`).
    """
    current = schema_version(con)
    if current > LATEST_VERSION:
        raise BankError(
            f"the bank has schema version {current} but this loragen knows versions up to {LATEST_VERSION}; "
            "upgrade loragen to open it."
        )
    for version, description, statements in MIGRATIONS:
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for sql in statements:
                con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [version, description])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        logger.info("bank schema migrated to version %d (%s)", version, description)
        current = version
    return current
