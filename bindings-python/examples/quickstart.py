"""tenure quick start (Python): start a server, take a lock and react to its loss, run an
election and react to master changes.

Run: python examples/quickstart.py [DATA_DIR]
"""

import sys
import tempfile

import tenure


def main(data_dir: str) -> None:
    # An embedded server; in production, connect to `tenure serve` instead.
    with tenure.Server(listen="127.0.0.1:0", data_dir=data_dir) as server:
        with tenure.Client([server.address], session_ttl=2.0) as client:
            # Every event of this client (session, locks), on tenure's dispatcher thread.
            sub = client.on_event(lambda ev: print(f"event: {ev.kind}"))

            # A lock with a fencing token; on_lost runs if the session's lease ends first.
            with client.lock(
                "jobs/reindex",
                timeout=5.0,
                on_lost=lambda ev: print(f"lost {ev.name} because {ev.reason}"),
            ) as lock:
                print(f"holding {lock.name} with token {lock.fencing_token}")
                assert lock.held

            # An election: the live candidate of highest priority is master.
            election = client.campaign(
                "scheduler",
                candidate_id="a",
                priority=10,
                on_master_change=lambda ev: print(f"master is now {ev.master}"),
            )
            # Anyone can ask who the master is (the service designates one if needed).
            print(f"master: {client.request_election('scheduler')}")
            election.resign()
            sub.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as d:
            main(d)
