"""The shared fixtures themselves: a dataset written by tests/conftest.py is the same in every run."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

# Every domain form the fixtures write, for two buildings; prints a digest of the files' paths and bytes.
_DIGEST = """
import hashlib
from tests.conftest import FIXTURE_DOMAINS, view_files
digest = hashlib.sha256()
for building in ("hanson", "woodbine"):
    for path, contents in sorted(view_files("taskonomy", building, 1, 2, FIXTURE_DOMAINS).items()):
        digest.update(str(path).encode() + b"\\0" + contents)
print(digest.hexdigest())
"""


def test_fixture_files_do_not_depend_on_the_string_hash_seed():
    # str hashes are salted per process: a seed drawn from hash() made every run's fixtures different, so a
    # failure could not be reproduced. Two processes with different salts must write the same bytes.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _DIGEST],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2")
    ]  # side by side: each spends its second importing
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
    assert outputs[0][0] == outputs[1][0] and len(outputs[0][0].strip()) == 64
