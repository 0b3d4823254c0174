"""Ledger tables. Rows are only ever inserted: database triggers refuse UPDATE and DELETE."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary, SmallInteger, String, Text
from sqlmodel import Field, SQLModel


class Entry(SQLModel, table=True):
    """One ledger entry: its canonical bytes exactly as hashed, plus columns to index by."""

    __tablename__ = "ledger_entries"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    kind: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    at: str = Field(sa_column=Column(String(32), nullable=False))
    actor: str = Field(sa_column=Column(String(128), nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TreeNode(SQLModel, table=True):
    """A perfect Merkle subtree of ``2**level`` leaves (level >= 1; leaves live in entries)."""

    __tablename__ = "ledger_tree_nodes"

    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class StoredCheckpoint(SQLModel, table=True):
    """A signed checkpoint, exactly the signed-note text that was published."""

    __tablename__ = "ledger_checkpoints"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: str = Field(sa_column=Column(String(32), nullable=False))


class VaultKey(SQLModel, table=True):
    """A subject's data key, sealed with the vault master key. Erasure deletes the row."""

    __tablename__ = "vault_keys"

    subject: str = Field(sa_column=Column(String(64), primary_key=True))
    sealed_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))


class VaultRecord(SQLModel, table=True):
    """One identifying field of a subject, encrypted with the subject's key."""

    __tablename__ = "vault_records"

    subject: str = Field(sa_column=Column(String(64), primary_key=True))
    name: str = Field(sa_column=Column(String(64), primary_key=True))
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


entries_table = Entry.__table__  # type: ignore[attr-defined]
nodes_table = TreeNode.__table__  # type: ignore[attr-defined]
checkpoints_table = StoredCheckpoint.__table__  # type: ignore[attr-defined]
vault_keys_table = VaultKey.__table__  # type: ignore[attr-defined]
vault_records_table = VaultRecord.__table__  # type: ignore[attr-defined]
