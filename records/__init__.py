"""Call history: the schema, the store, the spool that carries records to it, the drainer.

How a record travels (docs/architecture.md, "Call records"): the worker journals each
finished turn to a spool file and writes its record there at the end (`records/spool.py`);
one drainer per instance moves spooled records into the database (`records/drainer.py`);
the CLI reads the database (`records/store.py`, `records/queries.py`).
"""
