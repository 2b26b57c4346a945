"""Database layer of the reference stack: schema, engines, shared operations."""

from refstack.db.engine import (
    DatabaseError, DatabaseTimeout, DatabaseUnavailable, PoolExhausted, TransactionConflict, classify,
    make_engine, make_probe_engine, run_transaction, wait_for_database,
)
from refstack.db.schema import TERMINAL, metadata, migrate

__all__ = [
    "DatabaseError", "DatabaseTimeout", "DatabaseUnavailable", "PoolExhausted", "TransactionConflict",
    "classify", "make_engine", "make_probe_engine", "run_transaction", "wait_for_database",
    "TERMINAL", "metadata", "migrate",
]
