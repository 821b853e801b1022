//! `tenure-bench`: measures tenure, and etcd beside it, on this machine in one run, and writes
//! the results with the machine and the date to `BENCHMARKS.md` (also printed on stdout).
//!
//! ```text
//! cargo run --release -p tenure-bench [-- --quick | --smoke] [--out FILE] [--no-etcd]
//!                                      [--tenure PATH] [--time-limit SECS] [--compare DIR [--rounds N]]
//! cargo run --release -p tenure-bench -- --group [--quick | --smoke] [--trials N] [--systems LIST] [--zk]
//! cargo run --release -p tenure-bench -- --etcd-backend [--quick | --smoke]
//! ```
//!
//! The program is an orchestrator: it starts the servers (`tenure serve`, or an embedded
//! `tenure::Server` in a worker process when that command is missing; etcd) and re-executes
//! itself as workers (`tenure-bench worker NAME ...`, see [`workers`] and [`etcd`]) for the
//! clients, so that client and server are always in different processes and talk over
//! loopback. Times taken in different processes are `CLOCK_MONOTONIC` readings, which are
//! comparable across processes. Every wait has a timeout; a watchdog ends the whole run (and
//! every child) after `--time-limit` seconds; children also die with the orchestrator.

mod ab;
mod bench;
mod child;
mod elect;
mod etcd;
mod etcd_backend;
mod failover;
mod group;
mod keepalive;
mod plots;
mod proxy;
mod raw;
mod retry;
mod util;
mod workers;
mod zk;

/// Ends a worker with a message on stderr and status 1.
pub fn die(msg: &str) -> ! {
    eprintln!("tenure-bench worker {}: {msg}", std::process::id());
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        let Some(name) = args.get(1) else {
            die("worker needs a name");
        };
        workers::run(name, &util::Args::parse(&args[2..]));
        return;
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: tenure-bench [--quick | --smoke] [--out FILE] [--no-etcd] [--tenure PATH] [--time-limit SECS] [--compare DIR [--rounds N]]\n\
             \x20      tenure-bench --group [--quick | --smoke] [--trials N] [--systems tenure,etcd,etcd-fast,zk] [--zk]\n\
             \x20      tenure-bench --etcd-backend [--quick | --smoke]\n\
             Measures tenure (and etcd) on this machine and writes BENCHMARKS.md (keeping its part\n\
             after the `---` line) and the plots in tests/bench/plots. --smoke: tiny counts,\n\
             checks that every phase works, writes target/bench-smoke/ and prints\n\
             `bench-smoke: N passed, N failed` (exit status 1 if any failed). --compare DIR: this\n\
             build against the `tenure` and `tenure-bench` of another build in DIR, alternately;\n\
             writes bench-compare.md beside this program (or --out FILE). --group: three-member\n\
             tenure, etcd and ZooKeeper clusters side by side (lock+release, 64 clients, leader\n\
             kill -9 trials, keep-alives with 100,000 sessions); replaces the group section of\n\
             BENCHMARKS.md (smoke: target/bench-smoke/group.md, ZooKeeper only with --zk).\n\
             --etcd-backend: tenure's client on etcd beside etcd-client's lock RPC and etcdctl\n\
             lock (lock+release, hand-over to a waiter queued 1 ms); replaces its section of\n\
             BENCHMARKS.md (smoke: target/bench-smoke/etcd-backend.md)."
        );
        return;
    }
    let a = util::Args::parse(&args);
    if a.has("retry") && a.has("plan-out") {
        // The plan the simulation runs (tests/bench/run.sh --retry writes it first).
        let scale = if a.has("smoke") {
            util::Scale::Smoke
        } else if a.has("quick") {
            util::Scale::Quick
        } else {
            util::Scale::Full
        };
        let plan = serde_json::to_string_pretty(&retry::plan(scale)).expect("a plan");
        if let Err(e) = std::fs::write(a.str("plan-out"), plan) {
            eprintln!("cannot write the plan: {e}");
            std::process::exit(1);
        }
        return;
    }
    let code = bench::main(&a);
    std::process::exit(code);
}
