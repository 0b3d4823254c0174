"""Public read API of the ledger (DESIGN.md, "Public read API"). No personal data is served."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import InstanceDep

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


class EntryOut(BaseModel):
    """One entry: the hashed object and its leaf hash."""

    entry: dict[str, Any]
    leaf_hash: str


class EntriesOut(BaseModel):
    """A page of entries in sequence order."""

    entries: list[EntryOut]


class InclusionOut(BaseModel):
    """RFC 9162 inclusion proof (audit path, leaf to root), hex hashes."""

    seq: int
    size: int
    leaf_hash: str
    proof: list[str]


class ConsistencyOut(BaseModel):
    """RFC 9162 consistency proof from tree size ``from`` to tree size ``to``, hex hashes."""

    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from")
    to: int
    proof: list[str]


@router.get("/checkpoint", response_class=PlainTextResponse, summary="Latest signed checkpoint (C2SP signed note)")
def get_checkpoint(instance: InstanceDep) -> PlainTextResponse:
    """Exactly the signed-note bytes of the newest checkpoint."""
    return PlainTextResponse(instance.ledger.latest_checkpoint(), media_type="text/plain; charset=utf-8")


@router.get("/verifier-key", response_class=PlainTextResponse, summary="Note verifier key of the log")
def get_verifier_key(instance: InstanceDep) -> PlainTextResponse:
    """The verifier key as Go's ``note.NewVerifier`` reads it."""
    return PlainTextResponse(instance.ledger.signer.verifier.to_text() + "\n", media_type="text/plain; charset=utf-8")


@router.get("/entries", response_model=EntriesOut, summary="Entries with start <= seq < end")
def get_entries(
    instance: InstanceDep,
    start: Annotated[int, Query(ge=0, le=2**62)],
    end: Annotated[int, Query(ge=0, le=2**62)],
) -> EntriesOut:
    """A page of entries (may be fewer than asked, never more)."""
    rows = instance.ledger.entries(start, end)
    return EntriesOut(entries=[EntryOut(entry=e.to_json(), leaf_hash=leaf.hex()) for e, leaf in rows])


@router.get("/proofs/inclusion", response_model=InclusionOut, summary="RFC 9162 inclusion proof")
def get_inclusion(
    instance: InstanceDep, seq: Annotated[int, Query(ge=0, le=2**62)], size: Annotated[int, Query(ge=1, le=2**62)]
) -> InclusionOut:
    """Audit path of entry *seq* in the tree of *size* entries."""
    proof = instance.ledger.inclusion_proof(seq, size)
    return InclusionOut(**proof.to_json())


@router.get("/proofs/consistency", response_model=ConsistencyOut, summary="RFC 9162 consistency proof")
def get_consistency(
    instance: InstanceDep,
    from_: Annotated[int, Query(alias="from", ge=0, le=2**62)],
    to: Annotated[int, Query(ge=0, le=2**62)],
) -> ConsistencyOut:
    """Consistency proof from tree size *from* to tree size *to*."""
    proof = instance.ledger.consistency_proof(from_, to)
    return ConsistencyOut.model_validate({"from": from_, "to": to, "proof": [p.hex() for p in proof]})
