"""Tables of the reference stack and an idempotent migration under an advisory lock.

Job state lives here, not in a Celery result backend. Money is guarded twice:
``credits.balance`` has ``CHECK (balance >= 0)`` and ``credit_ledger`` has
``UNIQUE (job_id, kind)`` so a job is charged once and refunded once, whoever
retries.
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    BigInteger, CheckConstraint, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData,
    Table, Text, UniqueConstraint, func, text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Engine

from refstack.broken import is_broken

log = logging.getLogger(__name__)

metadata = MetaData()

JOB_STATUSES = ("pending", "running", "completed", "failed", "timeout", "cancelled")
TERMINAL = ("completed", "failed", "timeout", "cancelled")
JOB_KINDS = ("render", "ai")
LEDGER_KINDS = ("grant", "adjust", "charge", "refund")

users = Table(
    "users", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("phone", Text, unique=True),
    Column("password_hash", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("prefix", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),  # sha256 of the key; the key is never stored
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deleted_at", DateTime(timezone=True)),  # soft delete: a deleted key gets its own 401 message
    Index("ix_api_keys_user_id", "user_id"),
)

login_tokens = Table(
    "login_tokens", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_login_tokens_user_id", "user_id"),
)


def _credits_table() -> Table:
    constraints = [] if is_broken("api_negative_balance") else [
        CheckConstraint("balance >= 0", name="ck_credits_balance_nonnegative")]
    return Table(
        "credits", metadata,
        Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        Column("balance", BigInteger, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        *constraints,
    )


credits = _credits_table()

credit_ledger = Table(
    "credit_ledger", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("job_id", UUID(as_uuid=True)),  # NULL for grants / admin adjustments
    Column("kind", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed: charge < 0, refund > 0
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("job_id", "kind", name="uq_credit_ledger_job_kind"),
    CheckConstraint(f"kind IN {LEDGER_KINDS!r}", name="ck_credit_ledger_kind"),
    Index("ix_credit_ledger_user_id", "user_id"),
)

conversations = Table(
    "conversations", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_conversations_user_id", "user_id"),  # A 性能优化 1
)

messages = Table(
    "messages", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("conversation_id", UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"),
           nullable=False),
    Column("job_id", UUID(as_uuid=True)),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_messages_conversation_id", "conversation_id", "id"),
    # one assistant answer per job, even if the task is redelivered
    Index("uq_messages_job_role", "job_id", "role", unique=True, postgresql_where=text("job_id IS NOT NULL")),
)

jobs = Table(
    "jobs", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("progress", Float, nullable=False, server_default="0"),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("encoder_used", Text),
    Column("output_path", Text),
    Column("output_bytes", BigInteger),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("cost", BigInteger, nullable=False, server_default="0"),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("result", JSONB),
    Column("conversation_id", UUID(as_uuid=True)),
    Column("worker", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(f"status IN {JOB_STATUSES!r}", name="ck_jobs_status"),
    CheckConstraint(f"kind IN {JOB_KINDS!r}", name="ck_jobs_kind"),
    CheckConstraint("progress >= 0 AND progress <= 100", name="ck_jobs_progress"),
)

# R §三.3 / A 性能优化 1: the hot queries are jobs by user (newest first), by status, by created_at.
JOB_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_jobs_user_created ON jobs (user_id, created_at DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS ix_jobs_status_created ON jobs (status, created_at)",
    "CREATE INDEX IF NOT EXISTS ix_jobs_created_at ON jobs (created_at DESC)",
    # the metrics scrape: render jobs finished in the last 15 minutes (render_success_rate)
    "CREATE INDEX IF NOT EXISTS ix_jobs_kind_finished ON jobs (kind, finished_at) WHERE finished_at IS NOT NULL",
)



def job_indexes() -> tuple[str, ...]:
    """The index DDL the migration runs (planted bugs may leave some out)."""
    if is_broken("api_no_indexes"):
        return ()
    if is_broken("db_no_jobs_by_user_index"):  # planted bug: the jobs-by-user index forgotten
        return tuple(ddl for ddl in JOB_INDEXES if "ix_jobs_user_created" not in ddl)
    return JOB_INDEXES


#: arbitrary constant: one migrator at a time across API processes and workers
MIGRATION_LOCK_ID = 0x52_43_48_41  # "RCHA"


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema; safe to run from every process at once."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})  # session-level
        conn.commit()
        try:
            with conn.begin():
                if is_broken("db_migrate_recreates_tables"):
                    metadata.drop_all(conn, checkfirst=True)  # planted bug: dev-mode reset left in
                metadata.create_all(conn, checkfirst=True)
                for ddl in job_indexes():
                    conn.execute(text(ddl))
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            conn.commit()
    log.info("schema ready")
