//! `tenure-faults`: a tenure group of real `tenure serve` processes, lock clients in
//! processes of their own writing to a fenced resource, and a seeded nemesis that kills,
//! pauses, cuts off and wipes them; then a checker reads every history (issue 14).
//!
//! `tenure-faults [--members 3|5] [--clients N] [--names N] [--seconds S] [--seed N] [--ttl-ms T]
//! [--busy N] [--tenure PATH] [--dir DIR]` runs it (`--busy`: processes spinning on the
//! cores meanwhile) and exits 0 when the checker found nothing, 1 with
//! the violations otherwise (2 for bad arguments or a run that could not be set up).
//! `tenure-faults worker ...` is a lock client (started by the run).

mod check;
mod run;
mod worker;

use std::process::ExitCode;

/// Nanoseconds of CLOCK_MONOTONIC: one clock for every process of the run, so that their
/// histories can be merged.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `--key value` arguments.
pub struct Args(Vec<(String, String)>);

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let k = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {a:?}"))?;
            let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
            out.push((k.to_string(), v.clone()));
        }
        Ok(Args(out))
    }

    /// The value of `--key`, if given.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
    }

    /// `--key` as a number, or `default`.
    pub fn num(&self, k: &str, default: u64) -> Result<u64, String> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{k} {v:?} is not a number")),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return match Args::parse(&args[1..]) {
            Ok(a) => worker::run(&a),
            Err(e) => {
                eprintln!("tenure-faults worker: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: tenure-faults [--members 3|5] [--clients N] [--names N] [--seconds S] [--seed N] \
             [--ttl-ms T] [--busy N] [--tenure PATH] [--dir DIR]\n\
             Runs a tenure group under a seeded nemesis (kill -9, SIGSTOP, cut-off members, \
             wiped disks, killed and paused clients) for S seconds of faults, heals, and checks \
             the histories. Exit 0: no violation; 1: violations (listed); 2: setup failed."
        );
        return ExitCode::SUCCESS;
    }
    let a = match Args::parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tenure-faults: {e}");
            return ExitCode::from(2);
        }
    };
    match run::run(&a) {
        Ok(report) => {
            println!("{}", report.text);
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                for v in &report.violations {
                    println!("VIOLATION: {v}");
                }
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("tenure-faults: {e}");
            ExitCode::from(2)
        }
    }
}
