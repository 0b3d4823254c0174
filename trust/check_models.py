"""Projection tables of recorded check decisions (for the individual's uses page and statistics)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, String
from sqlmodel import Field, SQLModel


class CheckDecision(SQLModel, table=True):
    """One recorded check decision."""

    __tablename__ = "check_decisions"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    organisation: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    request: str = Field(sa_column=Column(String(64), nullable=False))
    purpose: str = Field(sa_column=Column(String(128), nullable=False))
    decision: str = Field(sa_column=Column(String(16), nullable=False))
    at: str = Field(sa_column=Column(String(32), nullable=False))


class CheckSubject(SQLModel, table=True):
    """A subject named in a check decision, and whether the decision permitted them."""

    __tablename__ = "check_subjects"

    subject: str = Field(sa_column=Column(String(64), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    is_permitted: bool = Field(sa_column=Column(Boolean, nullable=False))


check_decisions_table = CheckDecision.__table__  # type: ignore[attr-defined]
check_subjects_table = CheckSubject.__table__  # type: ignore[attr-defined]
