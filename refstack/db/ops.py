"""Operations on users, keys, credits and jobs shared by the API and the workers.

Every state change is a conditional UPDATE (``WHERE status IN (...)``), so a
redelivered task or a retried request can run any of these again without
effect. Money moves only together with a ledger row whose ``UNIQUE (job_id,
kind)`` makes the charge and the refund of a job happen at most once.
Lock order everywhere: jobs row, then credits row.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from refstack.broken import is_broken
from refstack.db.schema import api_keys, credit_ledger, credits, jobs, login_tokens, users

# ---------------------------------------------------------------- secrets


def hash_secret(secret: str) -> str:
    """API keys and login tokens are random and long: a plain SHA-256 is enough to store them."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, 60_000)
    return f"pbkdf2${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("pbkdf2$"):
        return False
    _, salt_hex, digest_hex = stored.split("$", 2)
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt_hex)).split("$", 2)[2], digest_hex)


def new_api_key() -> tuple[str, str]:
    """(key, prefix). Keys look like ``rk_<8 hex>_<secret>``; the prefix identifies it in logs."""
    prefix = secrets.token_hex(4)
    return f"rk_{prefix}_{secrets.token_urlsafe(24)}", prefix


# ---------------------------------------------------------------- users and keys


@dataclass(frozen=True)
class NewUser:
    user_id: uuid.UUID
    key_id: uuid.UUID
    api_key: str
    phone: str
    password: str
    credits: int


def create_user(conn: Connection, *, name: str, phone: str | None, password: str | None,
                balance: int) -> NewUser:
    user_id = uuid.uuid4()
    phone = phone or "1" + "".join(secrets.choice("0123456789") for _ in range(10))
    password = password or secrets.token_urlsafe(12)
    conn.execute(insert(users).values(id=user_id, name=name, phone=phone, password_hash=hash_password(password)))
    conn.execute(insert(credits).values(user_id=user_id, balance=balance))
    if balance:
        conn.execute(insert(credit_ledger).values(user_id=user_id, job_id=None, kind="grant", amount=balance))
    key_id, key = create_api_key(conn, user_id)
    return NewUser(user_id, key_id, key, phone, password, balance)


def create_api_key(conn: Connection, user_id: uuid.UUID) -> tuple[uuid.UUID, str]:
    key, prefix = new_api_key()
    key_id = uuid.uuid4()
    conn.execute(insert(api_keys).values(id=key_id, user_id=user_id, prefix=prefix, key_hash=hash_secret(key)))
    return key_id, key


def delete_api_key(conn: Connection, key_id: uuid.UUID) -> bool:
    row = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.deleted_at.is_(None))
                       .values(deleted_at=text("now()")).returning(api_keys.c.id)).first()
    return row is not None


def delete_user_keys(conn: Connection, user_id: uuid.UUID) -> int:
    rows = conn.execute(update(api_keys).where(api_keys.c.user_id == user_id, api_keys.c.deleted_at.is_(None))
                        .values(deleted_at=text("now()")).returning(api_keys.c.id)).all()
    return len(rows)


def lookup_api_key(conn: Connection, key: str) -> tuple[uuid.UUID, uuid.UUID, datetime | None] | None:
    """(user_id, key_id, deleted_at) of a key, or None when unknown."""
    row = conn.execute(select(api_keys.c.user_id, api_keys.c.id, api_keys.c.deleted_at)
                       .where(api_keys.c.key_hash == hash_secret(key))).first()
    return (row.user_id, row.id, row.deleted_at) if row else None


def issue_token(conn: Connection, user_id: uuid.UUID, ttl_seconds: float) -> tuple[str, datetime]:
    token = "tk_" + secrets.token_urlsafe(32)
    expires = datetime.now(timezone.utc) + timedelta(seconds=ttl_seconds)
    conn.execute(insert(login_tokens).values(id=uuid.uuid4(), user_id=user_id, token_hash=hash_secret(token),
                                             expires_at=expires))
    return token, expires


def lookup_token(conn: Connection, token: str) -> tuple[uuid.UUID, datetime] | None:
    row = conn.execute(select(login_tokens.c.user_id, login_tokens.c.expires_at)
                       .where(login_tokens.c.token_hash == hash_secret(token))).first()
    return (row.user_id, row.expires_at) if row else None


# ---------------------------------------------------------------- credits


def charge(conn: Connection, user_id: uuid.UUID, job_id: uuid.UUID, cost: int) -> bool:
    """Take ``cost`` credits for ``job_id`` in the caller's transaction; False if the balance is short.

    One conditional UPDATE: no check-then-update window, and the CHECK
    constraint backs it up (R §二, A §1.4).
    """
    if cost <= 0:
        return True
    if is_broken("api_negative_balance"):
        # planted bug: read, decide, then write -- two concurrent submits both pass the check
        balance = conn.execute(select(credits.c.balance).where(credits.c.user_id == user_id)).scalar()
        if balance is None or balance < cost:
            return False
        time.sleep(0.05)  # widen the race window of the planted bug
        conn.execute(update(credits).where(credits.c.user_id == user_id)
                     .values(balance=credits.c.balance - cost, updated_at=text("now()")))
    else:
        row = conn.execute(update(credits).where(credits.c.user_id == user_id, credits.c.balance >= cost)
                           .values(balance=credits.c.balance - cost, updated_at=text("now()"))
                           .returning(credits.c.balance)).first()
        if row is None:
            return False
    conn.execute(insert(credit_ledger).values(user_id=user_id, job_id=job_id, kind="charge", amount=-cost))
    return True


def refund(conn: Connection, job_id: uuid.UUID) -> int:
    """Give back what ``job_id`` was charged, at most once ever; returns the amount refunded now."""
    charged = conn.execute(select(credit_ledger.c.user_id, credit_ledger.c.amount)
                           .where(credit_ledger.c.job_id == job_id, credit_ledger.c.kind == "charge")).first()
    if charged is None or charged.amount == 0:
        return 0
    amount = -charged.amount
    inserted = conn.execute(
        pg_insert(credit_ledger).values(user_id=charged.user_id, job_id=job_id, kind="refund", amount=amount)
        .on_conflict_do_nothing(constraint="uq_credit_ledger_job_kind").returning(credit_ledger.c.id)).first()
    if inserted is None:
        return 0  # already refunded
    conn.execute(update(credits).where(credits.c.user_id == charged.user_id)
                 .values(balance=credits.c.balance + amount, updated_at=text("now()")))
    return amount


def set_balance(conn: Connection, user_id: uuid.UUID, balance: int) -> int | None:
    old = conn.execute(select(credits.c.balance).where(credits.c.user_id == user_id).with_for_update()).scalar()
    if old is None:
        return None
    conn.execute(update(credits).where(credits.c.user_id == user_id).values(balance=balance, updated_at=text("now()")))
    if balance != old:
        conn.execute(insert(credit_ledger).values(user_id=user_id, job_id=None, kind="adjust", amount=balance - old))
    return balance


def ledger(conn: Connection, *, user_id: uuid.UUID | None = None, job_id: uuid.UUID | None = None) -> list[dict]:
    q = select(credit_ledger).order_by(credit_ledger.c.id)
    if user_id is not None:
        q = q.where(credit_ledger.c.user_id == user_id)
    if job_id is not None:
        q = q.where(credit_ledger.c.job_id == job_id)
    return [
        {"id": r.id, "user_id": str(r.user_id), "job_id": str(r.job_id) if r.job_id else None, "kind": r.kind,
         "amount": r.amount, "created_at": r.created_at.isoformat()}
        for r in conn.execute(q)
    ]


# ---------------------------------------------------------------- jobs


def job_row(conn: Connection, job_id: uuid.UUID, user_id: uuid.UUID | None = None) -> Any:
    q = select(jobs).where(jobs.c.id == job_id)
    if user_id is not None:
        q = q.where(jobs.c.user_id == user_id)
    return conn.execute(q).first()


def claim(conn: Connection, job_id: uuid.UUID, worker: str) -> Any:
    """pending/running -> running, counting the attempt. None if the job is terminal or unknown."""
    return conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(("pending", "running")))
        .values(status="running", attempts=jobs.c.attempts + 1, worker=worker,
                started_at=text("coalesce(started_at, now())"), updated_at=text("now()"))
        .returning(*jobs.c)).first()


def set_progress(conn: Connection, job_id: uuid.UUID, progress: float) -> str | None:
    """Record progress if the job is still running; returns the status seen (cancel detection)."""
    row = conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status == "running")
        .values(progress=max(0.0, min(99.0, progress)), updated_at=text("now()")).returning(jobs.c.status)).first()
    if row is not None:
        return row.status
    return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()


def complete(conn: Connection, job_id: uuid.UUID, **values: Any) -> bool:
    row = conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status == "running")
        .values(status="completed", progress=100.0, error_code=None, error_message=None,
                finished_at=text("now()"), updated_at=text("now()"), **values).returning(jobs.c.id)).first()
    return row is not None


def finish_unsuccessfully(conn: Connection, job_id: uuid.UUID, status: str, code: str, message: str,
                          *, from_statuses: tuple[str, ...] = ("pending", "running"), refund_it: bool = True,
                          **values: Any) -> bool:
    """-> failed / timeout / cancelled, refunding exactly once. False if it was already terminal."""
    row = conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(from_statuses))
        .values(status=status, error_code=code, error_message=message[:2000], finished_at=text("now()"),
                updated_at=text("now()"), **values).returning(jobs.c.id)).first()
    if row is None:
        return False
    if refund_it:
        refund(conn, job_id)
    return True


def job_public(row: Any) -> dict:
    """The fields of a job every API shows."""
    return {
        "id": str(row.id),
        "kind": row.kind,
        "status": row.status,
        "progress": round(float(row.progress), 1),
        "error_code": row.error_code,
        "error_message": row.error_message,
        "encoder_used": row.encoder_used,
        "attempts": row.attempts,
        "cost": row.cost,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }
