"""A writer killed with SIGKILL mid-append leaves a ledger that verifies and continues where it stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger import repository
from ledger.db import Database
from ledger.export import verify_live
from ledger.keys import Signer
from ledger.service import Ledger

ORIGIN = "datatrust.test/crash"

APPENDER = """
import sys, threading
from datetime import UTC, datetime
from pathlib import Path

from ledger.db import Database
from ledger.keys import Signer
from ledger.service import Ledger

ledger = Ledger(Database.from_url(sys.argv[1]), signer=Signer.load(Path(sys.argv[2])), origin=sys.argv[3])
ledger.append("check.decided", {"n": -1}, actor="org_crash", now=datetime.now(UTC), checkpoint=True)
lock = threading.Lock()


def work(thread: int) -> None:
    n = 0
    while True:  # until killed
        entry = ledger.append("check.decided", {"t": thread, "n": n}, actor="org_crash", now=datetime.now(UTC))
        with lock:  # printed only once the append returned, i.e. once it is durable
            print(entry.seq, flush=True)
        n += 1


for thread in range(4):
    threading.Thread(target=work, args=(thread,), daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [150])
def test_sigkill_mid_append_then_restart(db_url: str, tmp_path: Path, kill_after: int) -> None:
    """After SIGKILL the ledger verifies, keeps every entry reported durable, and the next append continues it."""
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    key = tmp_path / "log.key"
    signer = Signer.generate(ORIGIN)
    signer.save(key)
    child = subprocess.Popen(
        [sys.executable, str(script), db_url, str(key), ORIGIN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) >= kill_after:
                break
        child.send_signal(signal.SIGKILL)  # no clean-up, no atexit, possibly mid-transaction
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err
    assert len(acknowledged) >= kill_after

    db = Database.from_url(db_url)
    ledger = Ledger(db, signer=signer, origin=ORIGIN)
    try:
        with db.engine.connect() as conn:
            size = repository.size(conn)
            report = verify_live(conn, [signer.verifier], origin=ORIGIN)
        assert report.entries == size
        assert max(acknowledged) < size  # every append that returned survived the crash
        entry = ledger.append("check.decided", {"n": "after"}, actor="org_restart", now=datetime.now(UTC))
        assert entry.seq == size
        assert entry.prev == ledger.get(size - 1).leaf_hash
        ledger.sign_checkpoint()
        with db.engine.connect() as conn:
            report = verify_live(conn, [signer.verifier], origin=ORIGIN)
        assert (report.entries, report.uncovered) == (size + 1, 0)
    finally:
        ledger.close()
        db.dispose()
