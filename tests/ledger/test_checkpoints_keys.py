"""Checkpoint and signed-note formats (C2SP), the log key's files, and key rotation and revocation."""

from __future__ import annotations

import base64
import hashlib
import logging
import stat
from datetime import UTC, datetime
from pathlib import Path

import nacl.signing
import pytest
from typer.testing import CliRunner

from api.cli import app
from api.instance import Instance, rotate_log_key
from ledger import repository
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import SignatureInvalidError, ValidationError
from ledger.export import export_ledger, verify_export, verify_live
from ledger.keys import Signer, Verifier, key_id
from ledger.merkle import EMPTY_ROOT
from ledger.note import SignedNote, sign_note
from ledger.service import Ledger

ROOT = hashlib.sha256(b"a root").digest()


# -- C2SP tlog-checkpoint body -----------------------------------------------------------------


def test_checkpoint_body_is_exactly_origin_size_root() -> None:
    """The body is the origin line, the decimal size, the standard base64 root, each ending in a newline."""
    body = Checkpoint("example.org/log", 1234, ROOT).to_text()
    assert body == f"example.org/log\n1234\n{base64.standard_b64encode(ROOT).decode()}\n"
    assert Checkpoint.from_text(body) == Checkpoint("example.org/log", 1234, ROOT)


def test_checkpoint_extension_lines_round_trip() -> None:
    """Optional extension lines after the root are kept, in order."""
    checkpoint = Checkpoint("example.org/log", 0, EMPTY_ROOT, ("ext one", "ext two"))
    assert checkpoint.to_text().endswith("\next one\next two\n")
    assert Checkpoint.from_text(checkpoint.to_text()) == checkpoint


_B64 = base64.b64encode(ROOT).decode()
_URLSAFE = base64.urlsafe_b64encode(bytes(range(224, 256))).decode()  # has '-' or '_' where standard has '+' or '/'


@pytest.mark.parametrize(
    "body",
    [
        f"example.org/log\n12\n{_B64}",  # no trailing newline
        "example.org/log\n12\n",  # no root line
        f"\n12\n{_B64}\n",  # empty origin
        f"example.org/log\n012\n{_B64}\n",  # leading zero
        f"example.org/log\n-1\n{_B64}\n",  # negative
        f"example.org/log\n+1\n{_B64}\n",  # sign
        f"example.org/log\n 1\n{_B64}\n",  # white space
        f"example.org/log\n\u0661\u0662\n{_B64}\n",  # non-ASCII digits (Python's isdigit accepts them)
        f"example.org/log\n12\n{_URLSAFE}\n",  # URL-safe alphabet
        f"example.org/log\n12\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31-byte root
        f"example.org/log\n12\n{_B64.rstrip('=')}\n",  # missing padding
    ],
)
def test_malformed_checkpoint_bodies_rejected(body: str) -> None:
    """Bodies that break the C2SP grammar are refused."""
    with pytest.raises(ValidationError):
        Checkpoint.from_text(body)


# -- C2SP signed-note ------------------------------------------------------------------------


def test_signature_line_is_em_dash_name_base64_of_key_id_and_signature() -> None:
    """The signed note is the body, a blank line and '— name base64(4-byte key id || 64-byte Ed25519 signature)'."""
    signer = Signer.generate("example.org/log")
    body = Checkpoint("example.org/log", 7, ROOT).to_text()
    note = Checkpoint("example.org/log", 7, ROOT).sign(signer)
    assert note.startswith(body + "\n")
    sig_line = note[len(body) + 1 :]
    assert sig_line.endswith("\n")
    assert sig_line.count("\n") == 1
    assert sig_line.startswith("\u2014 example.org/log ")  # U+2014 EM DASH, a space, the key name, a space
    raw = base64.b64decode(sig_line.rstrip("\n").split(" ")[2], validate=True)
    assert len(raw) == 4 + 64
    public = signer.verifier.public_key
    assert (
        raw[:4] == hashlib.sha256(b"example.org/log\n\x01" + public).digest()[:4] == key_id("example.org/log", public)
    )
    nacl.signing.VerifyKey(public).verify(body.encode(), raw[4:])  # the signature covers exactly the body bytes
    assert open_checkpoint(note, [signer.verifier], origin="example.org/log") == Checkpoint("example.org/log", 7, ROOT)


def test_verifier_key_text_format() -> None:
    """The verifier key is name+8 hex digits+base64(0x01 || 32-byte public key), as Go's note.NewVerifier reads it."""
    signer = Signer.generate("example.org/log")
    name, hex_id, data = signer.verifier.to_text().split("+", 2)
    assert name == "example.org/log"
    assert hex_id == signer.verifier.key_id.hex()
    assert len(hex_id) == 8
    assert base64.b64decode(data) == b"\x01" + signer.verifier.public_key
    assert Verifier.from_text(signer.verifier.to_text()) == signer.verifier


def test_note_signed_by_several_keys() -> None:
    """A note with several signatures opens with any one known key; unknown signers are ignored."""
    a, b = Signer.generate("a.example"), Signer.generate("b.example")
    note = sign_note("hello\n", a, b)
    assert note.count("\n\n") == 1  # one blank line, then two signature lines
    assert note.count("\n\u2014 ") == 2
    assert SignedNote.from_text(note).verify([b.verifier]) == b.verifier
    assert SignedNote.from_text(note).verify([a.verifier, b.verifier]) == a.verifier


def test_note_with_one_bad_known_signature_fails() -> None:
    """As Go's note.Open: if any signature by a known key is bad, the note is refused."""
    a, b = Signer.generate("a.example"), Signer.generate("b.example")
    good = sign_note("hello\n", a, b)
    other = sign_note("other\n", b)
    forged = good.rsplit("\u2014 b.example ", 1)[0] + other.split("\n\n", 1)[1]
    with pytest.raises(SignatureInvalidError, match="does not verify"):
        SignedNote.from_text(forged).verify([a.verifier, b.verifier])


@pytest.mark.parametrize(
    "note",
    [
        "text\n\n\u2014 name c2lnbmF0dXJl",  # no final newline
        "text\n\u2014 name c2lnbmF0dXJlcw==\n",  # no blank line before the signatures
        "text\n\n- name c2lnbmF0dXJlcw==\n",  # a hyphen, not an em dash
        "text\n\n\u2014 name\n",  # no signature
        "text\n\n\u2014 na+me c2lnbmF0dXJlcw==\n",  # '+' in the name
        "text\n\n\u2014 name c2lnbmF0dXJlcw==extra\n",  # not base64
        "text\n\n\u2014 name AAAA\n",  # shorter than a key id and one byte
        "te\txt\n\n\u2014 name c2lnbmF0dXJlcw==\n",  # a control character in the text
        "text\n\n",  # no signature lines at all
    ],
)
def test_malformed_notes_rejected(note: str) -> None:
    """Notes Go's note.Open calls malformed are refused as malformed here too."""
    with pytest.raises(ValidationError):
        SignedNote.from_text(note)


def test_signer_key_round_trip_and_secrecy(tmp_path: Path) -> None:
    """The signer key file is mode 0600, is never overwritten, parses back, and its repr hides the seed."""
    signer = Signer.generate("example.org/log")
    path = tmp_path / "keys" / "log.key"
    signer.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Signer.load(path) == signer
    assert path.read_text().startswith("PRIVATE+KEY+example.org/log+")
    with pytest.raises(FileExistsError):
        signer.save(path)
    seed_text = base64.b64encode(b"\x01" + signer.seed).decode()
    assert seed_text not in repr(signer)
    assert seed_text not in str(signer)


@pytest.mark.parametrize(
    "text",
    [
        "PRIVATE+KEY+name+00000000+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",  # wrong key id
        "PRIVATE+KEY+name+c74f20a3",  # no key data
        "name+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",  # a verifier-shaped string
        "PRIVATE+KEY+name+c74f20a3+AgEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",  # wrong algorithm byte
    ],
)
def test_bad_signer_keys_rejected(text: str) -> None:
    """Malformed signer keys are refused."""
    with pytest.raises(ValidationError):
        Signer.from_text(text)


def test_verifier_key_id_must_be_eight_hex_digits() -> None:
    """A key id with white space in it is refused even if it decodes to the right bytes."""
    with pytest.raises(ValidationError):
        Verifier.from_text("PeterNeumann+c74f 20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


# -- a live trust ------------------------------------------------------------------------------


def test_live_checkpoint_format_and_key_files(instance: Instance) -> None:
    """A trust's checkpoint is origin/size/root signed by its log key; its key files are 0600."""
    note = instance.ledger.sign_checkpoint()
    body, sig_line = note.split("\n\n")
    origin, size, root = body.split("\n")
    assert origin == instance.origin
    assert int(size) == instance.ledger.size()
    assert base64.b64decode(root) == instance.ledger.root(int(size))
    assert sig_line.startswith(f"\u2014 {instance.origin} ")
    verifiers = (instance.data_dir / "keys" / "verifiers.txt").read_text().split()
    assert verifiers == [instance.ledger.signer.verifier.to_text()]
    assert open_checkpoint(note, [Verifier.from_text(verifiers[0])]).size == int(size)
    for name in ("log.key", "vault.key"):
        assert stat.S_IMODE((instance.data_dir / "keys" / name).stat().st_mode) == 0o600


def test_rotation_keeps_old_checkpoints_verifiable(instance: Instance, tmp_path: Path) -> None:
    """After `keys rotate` old checkpoints still verify and the export verifies with the new public key alone."""
    old_signer = instance.ledger.signer
    old_note = instance.ledger.sign_checkpoint()
    old, new = rotate_log_key(instance)
    assert old == old_signer.verifier
    assert new == instance.ledger.signer.verifier != old
    assert stat.S_IMODE((instance.data_dir / "keys" / "log.key").stat().st_mode) == 0o600
    assert not list((instance.data_dir / "keys").glob("*.retired.key"))  # the old private key is gone
    assert (instance.data_dir / "keys" / "verifiers.txt").read_text().split() == [old.to_text(), new.to_text()]
    assert open_checkpoint(old_note, [old]).size == 2  # an old checkpoint still opens with the old public key
    kinds = [entry.kind for entry, _leaf in instance.ledger.entries(0, 10)]
    assert kinds[-2:] == ["key.added", "key.revoked"]

    with instance.db.engine.connect() as conn:
        report = verify_live(conn, [new], origin=instance.origin)
        assert report.checkpoints == len(list(repository.iter_checkpoints(conn)))
    export = tmp_path / "ledger.jsonl"
    with instance.db.engine.connect() as conn, export.open("wb") as handle:
        export_ledger(conn, handle, origin=instance.origin)
    assert verify_export(export, [new]).entries == len(kinds)
    with pytest.raises(SignatureInvalidError, match="last checkpoint is not signed by the trusted key"):
        verify_export(export, [old])  # the retired key alone does not vouch for today's ledger


def test_revoked_key_cannot_sign_later_checkpoints(instance: Instance, db_url: str, tmp_path: Path) -> None:
    """A checkpoint signed by a revoked key after its revocation is refused by every verifier."""
    old_signer = instance.ledger.signer
    _old, new = rotate_log_key(instance)
    new_signer = instance.ledger.signer
    instance.ledger.close()
    ledger = Ledger(instance.db, signer=new_signer, origin=instance.origin, checkpoint_interval=3600)
    instance.ledger = ledger
    ledger.append("check.decided", {"n": 1}, actor="org_a", now=datetime.now(UTC), checkpoint=True)
    entry = ledger.append("check.decided", {"n": 2}, actor="org_a", now=datetime.now(UTC))
    size = entry.seq + 1
    forged = Checkpoint(instance.origin, size, ledger.root(size)).sign(old_signer)  # the old key, stolen or kept
    with instance.db.write_engine.begin() as conn:
        repository.insert_checkpoint(conn, size=size, root=ledger.root(size), note=forged, signed_at="x")
    with (
        instance.db.engine.connect() as conn,
        pytest.raises(SignatureInvalidError, match=f"checkpoint at tree size {size}"),
    ):
        verify_live(conn, [new], origin=instance.origin)
    result = CliRunner().invoke(
        app, ["ledger", "verify", "--data-dir", str(instance.data_dir)], env={"DATATRUST_DATABASE_URL": db_url}
    )
    assert result.exit_code == 1, result.output
    assert f"first bad sequence number: {size - 1}" in result.stderr
    export = tmp_path / "ledger.jsonl"
    with instance.db.engine.connect() as conn, export.open("wb") as handle:
        export_ledger(conn, handle, origin=instance.origin)
    with pytest.raises(SignatureInvalidError, match="not signed by a known key"):
        verify_export(export, [new])


def test_private_key_never_printed_or_logged(tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """`init`, `ledger checkpoint` and `keys rotate` print public keys only: no private key text reaches output or logs."""
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "trust"
    env = {"DATATRUST_DATABASE_URL": db_url}
    runner = CliRunner()
    outputs = []
    result = runner.invoke(app, ["init", "--data-dir", str(data_dir), "--name", "Key Trust"], env=env)
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    secrets = [(data_dir / "keys" / "log.key").read_text().strip()]
    result = runner.invoke(app, ["ledger", "checkpoint", "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    result = runner.invoke(app, ["keys", "rotate", "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    secrets.append((data_dir / "keys" / "log.key").read_text().strip())
    assert Signer.from_text(secrets[1]).verifier.to_text() in outputs[-1]  # the new public key is shown
    everything = "\n".join([*outputs, caplog.text])
    for secret in secrets:
        seed_part = secret.split("+", 4)[4]  # PRIVATE+KEY+NAME+KEYID+BASE64; the base64 may itself hold "+"
        assert len(seed_part) == 44  # base64 of the algorithm byte and the 32-byte seed
        assert seed_part not in everything
    assert "PRIVATE+KEY" not in everything
