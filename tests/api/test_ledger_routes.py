"""The public read API of the ledger, exactly as DESIGN.md's "Public read API" table promises it.

Every check here is what an outside verifier would do with nothing but HTTP,
the verifier key and RFC 8785 / RFC 9162 code of its own.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from fastapi.testclient import TestClient

from api.app import create_app
from api.instance import Instance, initialise
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.keys import Verifier
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.sequencer import AppendSpec
from ledger.service import Ledger
from tests.conftest import drop_pg_database, fresh_pg_database

SIZE = 62  # 2 entries from initialisation, then 60
PROBLEM = "application/problem+json"


def _key(client: TestClient) -> Verifier:
    response = client.get("/v1/ledger/verifier-key")
    assert response.status_code == 200
    return Verifier.from_text(response.text)


def _checkpoint(client: TestClient) -> Checkpoint:
    response = client.get("/v1/ledger/checkpoint")
    assert response.status_code == 200
    return open_checkpoint(response.text, [_key(client)])


def test_checkpoint_and_verifier_key(client: TestClient, instance: Instance) -> None:
    """The checkpoint is text/plain, exactly the signed-note bytes, and opens with the served verifier key."""
    response = client.get("/v1/ledger/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.content == instance.ledger.latest_checkpoint().encode()
    key = client.get("/v1/ledger/verifier-key")
    assert key.status_code == 200
    assert key.headers["content-type"].startswith("text/plain")
    name, hex_id, data = key.text.strip().split("+", 2)
    assert name == instance.origin
    assert len(hex_id) == 8
    assert base64.b64decode(data)[0] == 1  # Ed25519, as note.NewVerifier expects
    checkpoint = open_checkpoint(response.text, [Verifier.from_text(key.text)], origin=instance.origin)
    assert checkpoint.size == instance.ledger.size()


def test_fresh_trust_proofs(client: TestClient) -> None:
    """On a freshly initialised trust, each entry has an inclusion proof that verifies against the checkpoint."""
    checkpoint = _checkpoint(client)
    entries = client.get("/v1/ledger/entries", params={"start": 0, "end": checkpoint.size}).json()["entries"]
    assert [e["entry"]["seq"] for e in entries] == list(range(checkpoint.size))
    for item in entries:
        seq = item["entry"]["seq"]
        proof = client.get("/v1/ledger/proofs/inclusion", params={"seq": seq, "size": checkpoint.size}).json()
        assert proof["leaf_hash"] == item["leaf_hash"]
        verify_inclusion(
            seq,
            checkpoint.size,
            bytes.fromhex(proof["leaf_hash"]),
            [bytes.fromhex(p) for p in proof["proof"]],
            checkpoint.root,
        )


# -- one trust per engine, read by many tests -------------------------------------------------------


class Api:
    """A trust with a known ledger, its HTTP client and checkpoints seen along the way."""

    def __init__(self, instance: Instance, client: TestClient, seen: list[Checkpoint]) -> None:
        self.instance = instance
        self.client = client
        self.seen = seen


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A trust with 62 entries (checkpoints at several sizes) served over HTTP, once per engine."""
    root = tmp_path_factory.mktemp("ledger-api")
    pg_name = None
    if request.param == "sqlite":
        (root / "db").mkdir()
        shutil.copy(request.getfixturevalue("sqlite_template"), root / "db" / "datatrust.db")
        db_url = f"sqlite:///{root / 'db' / 'datatrust.db'}"
    else:
        pg_name, db_url = fresh_pg_database(request.getfixturevalue("pg_template"))
    instance = initialise(root / "trust", name="Api Trust", mission="Testing.", database_url=db_url)
    signer = instance.ledger.signer
    instance.ledger.close()
    instance.ledger = Ledger(instance.db, signer=signer, origin=instance.origin)  # filler without projections
    try:
        with TestClient(create_app(instance)) as client:
            seen = [_checkpoint(client)]
            for first in range(2, SIZE, 15):
                now = datetime.now(UTC)
                specs = [
                    AppendSpec("check.decided", "org_api", now, payload={"n": n, "text": f"caf\u00e9 \U0001f600 {n}"})
                    for n in range(first, min(SIZE, first + 15))
                ]
                instance.ledger.append_all(specs, checkpoint=True)
                seen.append(_checkpoint(client))
            assert [c.size for c in seen] == [2, 17, 32, 47, 62]
            yield Api(instance, client, seen)
    finally:
        instance.close()
        if pg_name is not None:
            drop_pg_database(pg_name)


def test_entries_page_contract(api: Api) -> None:
    """Entries come in order for start <= seq < end, never more than asked, each with its RFC 9162 leaf hash."""
    for start, end in [(0, SIZE), (5, 9), (10, 11), (7, 7), (SIZE - 3, SIZE + 50), (SIZE, SIZE + 10), (0, 10**6)]:
        response = api.client.get("/v1/ledger/entries", params={"start": start, "end": end})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        entries = response.json()["entries"]
        assert len(entries) <= end - start
        seqs = [item["entry"]["seq"] for item in entries]
        assert seqs == list(range(start, start + len(seqs)))  # a prefix of the range: a page
        assert all(start <= s < min(end, SIZE) for s in seqs)
        for item in entries:
            assert set(item) == {"entry", "leaf_hash"}
            assert set(item["entry"]) == {"v", "seq", "kind", "at", "actor", "prev", "payload"}
            # An outsider re-canonicalises the object with RFC 8785 and hashes it: it is the stored leaf.
            body = rfc8785.dumps(item["entry"])
            assert item["leaf_hash"] == hashlib.sha256(b"\x00" + body).hexdigest()
    everything = api.client.get("/v1/ledger/entries", params={"start": 0, "end": SIZE}).json()["entries"]
    for before, after in itertools.pairwise(everything):  # and the prev links chain them
        assert after["entry"]["prev"] == before["leaf_hash"]
    assert everything[0]["entry"]["prev"] == "0" * 64


def test_entries_page_is_capped(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A huge range is answered with a page (fewer entries than asked), never with more than asked."""
    monkeypatch.setattr("ledger.service.MAX_PAGE", 10)
    entries = api.client.get("/v1/ledger/entries", params={"start": 3, "end": SIZE}).json()["entries"]
    assert [e["entry"]["seq"] for e in entries] == list(range(3, 13))


def test_inclusion_proofs_verify_against_each_checkpoint(api: Api) -> None:
    """Every entry's inclusion proof verifies against the root of every checkpoint that contains it."""
    leaves = {
        e["entry"]["seq"]: e["leaf_hash"]
        for e in api.client.get("/v1/ledger/entries", params={"start": 0, "end": SIZE}).json()["entries"]
    }
    for checkpoint in api.seen:
        for seq in range(checkpoint.size):
            response = api.client.get("/v1/ledger/proofs/inclusion", params={"seq": seq, "size": checkpoint.size})
            assert response.status_code == 200
            proof = response.json()
            assert set(proof) == {"seq", "size", "leaf_hash", "proof"}
            assert (proof["seq"], proof["size"], proof["leaf_hash"]) == (seq, checkpoint.size, leaves[seq])
            path = [bytes.fromhex(p) for p in proof["proof"]]
            verify_inclusion(seq, checkpoint.size, bytes.fromhex(proof["leaf_hash"]), path, checkpoint.root)


def test_consistency_proofs_verify_between_checkpoints(api: Api) -> None:
    """The consistency proof between any two checkpoints an outsider saw verifies against both roots."""
    for old in api.seen:
        for new in api.seen:
            if old.size > new.size:
                continue
            response = api.client.get("/v1/ledger/proofs/consistency", params={"from": old.size, "to": new.size})
            assert response.status_code == 200
            body = response.json()
            assert set(body) == {"from", "to", "proof"}
            assert (body["from"], body["to"]) == (old.size, new.size)
            proof = [bytes.fromhex(p) for p in body["proof"]]
            verify_consistency(old.size, new.size, old.root, new.root, proof)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/ledger/entries", {"start": -1, "end": 5}),  # negative
        ("/v1/ledger/entries", {"start": 5, "end": 4}),  # start > end
        ("/v1/ledger/entries", {"start": "x", "end": 4}),  # not a number
        ("/v1/ledger/entries", {"start": 0}),  # end missing
        ("/v1/ledger/entries", {"start": 2**63, "end": 2**64}),  # beyond any tree
        ("/v1/ledger/proofs/inclusion", {"seq": -1, "size": 5}),  # negative
        ("/v1/ledger/proofs/inclusion", {"seq": 5, "size": 5}),  # seq >= size
        ("/v1/ledger/proofs/inclusion", {"seq": 0, "size": 0}),  # empty tree
        ("/v1/ledger/proofs/inclusion", {"seq": 0, "size": SIZE + 1}),  # size beyond the ledger
        ("/v1/ledger/proofs/inclusion", {"seq": 2**62, "size": 2**62 + 1}),  # far beyond the ledger
        ("/v1/ledger/proofs/inclusion", {"seq": 1.5, "size": 5}),  # not an integer
        ("/v1/ledger/proofs/consistency", {"from": -1, "to": 5}),  # negative
        ("/v1/ledger/proofs/consistency", {"from": 6, "to": 5}),  # from > to
        ("/v1/ledger/proofs/consistency", {"from": 1, "to": SIZE + 1}),  # size beyond the ledger
        ("/v1/ledger/proofs/consistency", {"to": 5}),  # from missing
    ],
)
def test_bad_parameters_are_problem_documents(api: Api, path: str, params: dict[str, Any]) -> None:
    """Bad parameters get an RFC 9457 problem document with a 4xx status, never a 500."""
    response = api.client.get(path, params=params)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == response.status_code
    assert {"type", "title", "detail"} <= set(problem)


def test_read_api_is_public_and_documented(api: Api) -> None:
    """The read endpoints answer without credentials and appear in the OpenAPI document."""
    for path, params in [
        ("/v1/ledger/checkpoint", {}),
        ("/v1/ledger/verifier-key", {}),
        ("/v1/ledger/entries", {"start": 0, "end": 2}),
        ("/v1/ledger/proofs/inclusion", {"seq": 0, "size": 2}),
        ("/v1/ledger/proofs/consistency", {"from": 1, "to": 2}),
    ]:
        assert api.client.get(path, params=params).status_code == 200
    assert "/v1/ledger/entries" in api.client.get("/openapi.json").json()["paths"]
