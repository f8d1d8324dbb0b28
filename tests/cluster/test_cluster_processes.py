"""`make cluster`'s process handling, without a cluster: PostgreSQL's folders must be reachable by the
``postgres`` user, and stopping a component that failed to start does not wait on its zombies.

Not marked ``cluster``: nothing here needs the running cluster."""

from __future__ import annotations

import os
import sys
import time

import pytest

from standins import cluster


def test_the_first_directory_the_postgres_user_cannot_enter_is_named(tmp_path):
    top = tmp_path / "repo"
    data = top / "sandbox" / "cluster" / "pg"
    data.mkdir(parents=True)
    me, groups = os.getuid(), set(os.getgroups()) | {os.getgid()}
    assert cluster.blocking_directory(data, me, groups) is None  # its owner passes everywhere here
    top.chmod(0o600)  # no search bit for the owner
    try:
        assert cluster.blocking_directory(data, me, groups) == top
    finally:
        top.chmod(0o755)
    other = 65534  # nobody: neither owner nor in the group of the folders pytest made 0700
    blocked = cluster.blocking_directory(data, other, {65534})
    assert blocked is not None and blocked in (*data.parents, data)
    assert not blocked.stat().st_mode & 0o001
    assert all(p.stat().st_mode & 0o001 for p in reversed(blocked.parents))  # it is the first one
    assert cluster.blocking_directory(tmp_path / "not" / "yet", me, groups) is None  # made later, by us


@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres user's check runs only when started as root")
def test_started_as_root_an_unreachable_data_folder_is_refused_plainly(tmp_path):
    import pwd

    postgres = pwd.getpwnam("postgres")
    closed = tmp_path / "closed"
    (closed / "pg").mkdir(parents=True)
    closed.chmod(0o700)
    blocked = cluster.blocking_directory(closed / "pg", postgres.pw_uid, {postgres.pw_gid})
    assert blocked is not None  # closed itself, or a folder above it pytest made 0700
    with pytest.raises(RuntimeError) as caught:
        cluster._check_pg_user_reaches(closed / "pg")
    assert f"cannot enter {blocked} (mode 700)" in str(caught.value) and f"chmod o+x {blocked}" in str(caught.value)


def test_stopping_a_component_whose_process_exited_does_not_wait_on_its_zombie(tmp_path):
    paths = cluster.Paths(tmp_path)
    paths.run.mkdir(parents=True)
    pid = cluster.spawn(paths, "failed", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
    time.sleep(0.5)
    started = time.monotonic()
    assert cluster.stop_group(paths, "failed", grace_s=8)
    assert time.monotonic() - started < 3  # SIGTERMed, reaped: not the whole grace period
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # collected, no zombie left
