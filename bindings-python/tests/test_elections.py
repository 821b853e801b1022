"""Elections: master changes seen in epoch order by candidates and an observer, and
request_election from a non-candidate."""

from __future__ import annotations

import threading

import tenure
from conftest import wait_until


class Recorder:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def __call__(self, ev):
        with self.lock:
            self.events.append(ev)

    def masters(self):
        with self.lock:
            return [(e.master.id if e.master else None) for e in self.events]

    def epochs(self):
        with self.lock:
            return [e.epoch for e in self.events]


def test_master_changes_in_epoch_order(connect):
    c1, c2, c3 = connect(), connect(), connect()
    seen_obs = Recorder()
    obs = c3.observe("scheduler", on_master_change=seen_obs)
    assert obs.master is None

    seen_a = Recorder()
    ea = c1.campaign("scheduler", candidate_id="a", priority=10, on_master_change=seen_a)
    wait_until(lambda: ea.is_master, 5.0, "a becomes master")
    assert ea.master == tenure.Master("a", None, ea.master.epoch)
    assert ea.master_epoch == ea.master.epoch

    seen_b = Recorder()
    eb = c2.campaign("scheduler", "b", 5, on_master_change=seen_b)
    assert not eb.is_master
    wait_until(lambda: seen_b.masters()[:1] == ["a"], 5.0, "b told that a is master")

    # A non-candidate asks who is master.
    m = c3.request_election("scheduler")
    assert isinstance(m, tenure.Master) and m.id == "a"

    ea.resign()
    assert not ea.is_master
    wait_until(lambda: eb.is_master, 5.0, "b takes over")
    eb.resign()
    wait_until(lambda: seen_obs.masters()[-1:] == [None], 5.0, "observer sees no master")

    for rec in (seen_obs, seen_a, seen_b):
        ep = rec.epochs()
        assert ep == sorted(ep) and len(set(ep)) == len(ep), f"epochs not increasing: {ep}"
        assert all(e.kind == "master_changed" and e.election == "scheduler" for e in rec.events)
    masters = seen_obs.masters()
    # A resignation may pass through "no master" before the next designation.
    assert [m for m in masters if m] == ["a", "b"], masters
    assert masters[-1] is None, masters
    assert obs.epoch == seen_obs.epochs()[-1]
    assert obs.master is None
    obs.close()

    # request_election with no candidate at all: None.
    assert c3.request_election("scheduler", timeout=2.0) is None


def test_request_election_designates_a_live_candidate(connect):
    c1, asker = connect(), connect()
    with c1.campaign("svc", candidate_id="only", priority=1) as e:
        m = asker.request_election("svc", timeout=5.0)
        assert m is not None and m.id == "only" and m.epoch >= 1
        assert e.is_master
    assert asker.request_election("svc", timeout=5.0) is None


def test_preemption_by_a_higher_priority(connect):
    c1, c2 = connect(), connect()
    low = c1.campaign("pre", candidate_id="low", priority=1)
    wait_until(lambda: low.is_master, 5.0, "low is master")
    high = c2.campaign("pre", candidate_id="high", priority=9, preempt=True)
    wait_until(lambda: high.is_master, 5.0, "high preempts")
    wait_until(lambda: not low.is_master, 5.0, "low steps down")
    high.resign()
    low.resign()
