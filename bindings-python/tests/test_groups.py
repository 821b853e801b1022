"""Groups: probation, promotion, views in order, replacement, leaving."""

from __future__ import annotations

import threading

import tenure
from conftest import wait_until


def test_join_promote_watch_leave(connect):
    a, b, w = connect(), connect(), connect()
    seen = []
    lock = threading.Lock()

    def rec(ev):
        with lock:
            seen.append(ev)

    watch = w.watch_group("workers", on_view_change=rec)
    m1 = a.join("workers", "m1", probation=0.2)
    assert m1.group == "workers" and m1.member_id == "m1"
    wait_until(lambda: m1.is_member, 5.0, "m1 is a member")
    wait_until(lambda: m1.is_full, 5.0, "m1 promoted")
    m2 = b.join("workers", "m2", needs_check=True)
    wait_until(lambda: m2.is_member, 5.0, "m2 is a member")
    assert not m2.is_full
    m2.report_check(True)
    wait_until(lambda: m2.is_full, 5.0, "m2 promoted after its check")
    wait_until(lambda: [(m.id, m.full) for m in watch.view.members]
               == [("m1", True), ("m2", True)], 5.0, "the watcher's view")
    assert all(isinstance(m, tenure.Member) for m in watch.view.members)
    m1.leave()
    wait_until(lambda: any(e.kind == "member_removed" and e.member == "m1" for e in seen),
               5.0, "member_removed")
    with lock:
        views = [e.view for e in seen if e.kind == "view_changed"]
        kinds = {e.kind for e in seen}
    assert views == sorted(views) and len(set(views)) == len(views)
    assert {"view_changed", "member_promoted", "member_removed"} <= kinds
    assert all(e.group == "workers" for e in seen)
    m2.leave()
    watch.close()


def test_replace_a_failed_member(connect):
    a, b, admin = connect(), connect(), connect()
    with a.join("pool", "old") as old:
        wait_until(lambda: old.is_full, 5.0, "old is full")
        new = b.join("pool", "new", probation=60.0)
        wait_until(lambda: new.is_member, 5.0, "new on probation")
        view = admin.replace("pool", "old", "new")
        assert isinstance(view, tenure.View)
        assert [(m.id, m.full) for m in view.members] == [("new", True)]
        wait_until(lambda: new.is_full, 5.0, "new promoted by replace")
        new.leave()
