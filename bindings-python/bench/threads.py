"""Threads one client adds with 100 held locks (each with a lost callback) and 10
subscriptions. Run: python bindings-python/bench/threads.py (see BENCHMARKS.md, issue 17)."""

import os, tenure, tempfile
def n(): return len(os.listdir("/proc/self/task"))
with tenure.Server(listen="127.0.0.1:0", durability="none") as s:
    base = n()
    c = tenure.Client([s.address], session_ttl=5.0)
    after_connect = n()
    locks = [c.lock(f"t/{i}", timeout=1.0, on_lost=lambda ev: None) for i in range(100)]
    subs = [c.on_event(lambda ev: None) for _ in range(10)]
    print(f"server+interpreter {base}, +client {after_connect-base}, +100 locks with on_lost +10 subscriptions {n()-after_connect}, client total {n()-base}")
    for l in locks: l.release()
    c.close()
