//! Small helpers shared by the orchestrator and the workers: a clock that is comparable across
//! processes, percentiles, formatting, `/proc` readings and argument parsing.

use std::collections::HashMap;
use std::time::Duration;

/// Nanoseconds of `CLOCK_MONOTONIC`. Every process on the machine reads the same clock, so
/// values taken in different processes can be subtracted from each other.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `CLOCK_MONOTONIC` reaches `t` (ns): a plain sleep, then a short spin for the
/// last 200 µs so that scheduled actions start within a few microseconds of their time.
pub fn sleep_until_ns(t: u64) {
    loop {
        let now = mono_ns();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > 300_000 {
            std::thread::sleep(Duration::from_nanos(left - 200_000));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Summary of a set of durations, in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Number of samples.
    pub n: usize,
    /// Median (nearest rank).
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
}

impl Stats {
    /// Percentiles of `samples` (sorted in place). An empty set gives all zeros.
    pub fn of(samples: &mut [u64]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort_unstable();
        Stats {
            n: samples.len(),
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
            max: *samples.last().unwrap(),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in nanoseconds as text with a unit chosen for its size ("48.2 µs", "3.10 ms").
pub fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

/// Signed variant of [`fmt_ns`].
pub fn fmt_ns_signed(ns: i64) -> String {
    if ns < 0 {
        format!("−{}", fmt_ns(ns.unsigned_abs()))
    } else {
        fmt_ns(ns as u64)
    }
}

/// CPU time (user + system) of a process so far, from `/proc/<pid>/stat`.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest`.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Resident set size of a process in bytes, from `/proc/<pid>/status`.
pub fn proc_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A free TCP port on 127.0.0.1 (bound, read and closed; another process could take it in
/// between, which is unlikely enough for a benchmark).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `--key value` pairs of a worker's command line.
#[derive(Debug, Default)]
pub struct Args(HashMap<String, String>);

impl Args {
    /// Parses `--key value` pairs; a lone `--flag` gets the value "true".
    pub fn parse(args: &[String]) -> Args {
        let mut m = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            if let Some(k) = args[i].strip_prefix("--") {
                match args.get(i + 1) {
                    Some(v) if !v.starts_with("--") => {
                        m.insert(k.to_string(), v.clone());
                        i += 2;
                    }
                    _ => {
                        m.insert(k.to_string(), "true".into());
                        i += 1;
                    }
                }
            } else {
                i += 1;
            }
        }
        Args(m)
    }

    /// The value of `--key` as text; exits the worker when it is missing.
    pub fn str(&self, k: &str) -> String {
        match self.0.get(k) {
            Some(v) => v.clone(),
            None => crate::die(&format!("missing argument --{k}")),
        }
    }

    /// The value of `--key` parsed as a number; exits the worker when missing or malformed.
    pub fn num<T: std::str::FromStr>(&self, k: &str) -> T {
        let v = self.str(k);
        match v.parse() {
            Ok(x) => x,
            Err(_) => crate::die(&format!("--{k} {v:?} is not a number")),
        }
    }

    /// True when `--key` was given.
    pub fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }

    /// The value of `--key`, or `default`.
    pub fn get_or(&self, k: &str, default: &str) -> String {
        self.0
            .get(k)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

/// Prints a worker's samples as one line: `samples v1 v2 ...` (nanoseconds).
pub fn print_samples(tag: &str, samples: &[u64]) {
    use std::io::Write;
    let mut s = String::with_capacity(samples.len() * 8 + 16);
    s.push_str(tag);
    for v in samples {
        s.push(' ');
        s.push_str(&v.to_string());
    }
    s.push('\n');
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Parses a line printed by [`print_samples`] whose first word is `tag`.
pub fn parse_samples(tag: &str, line: &str) -> Result<Vec<u64>, String> {
    let mut it = line.split_whitespace();
    if it.next() != Some(tag) {
        return Err(format!("expected a {tag:?} line, got {:?}", trunc(line)));
    }
    it.map(|v| {
        v.parse::<u64>()
            .map_err(|e| format!("bad sample {v:?}: {e}"))
    })
    .collect()
}

/// The first 200 characters of a line, for error messages.
pub fn trunc(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Prints one line on stdout and flushes it (workers talk to the orchestrator by lines).
pub fn say(line: &str) {
    use std::io::Write;
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The CPUs this process could run on when it started (what [`pin_thread`] restores).
static ORIGINAL_CPUS: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();

/// The CPU set of the calling thread.
fn current_cpus() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity(0, ..) writes the calling thread's set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        set
    }
}

/// Remembers the CPUs the process may use; call before any [`pin_thread`].
pub fn remember_cpus() {
    ORIGINAL_CPUS.get_or_init(current_cpus);
}

/// Restricts the calling thread to CPU `cpu`, or with `None` gives it back every CPU it had
/// at start (children inherit the set, so it must be restored). Returns false when the kernel
/// refuses.
pub fn pin_thread(cpu: Option<usize>) -> bool {
    let orig = *ORIGINAL_CPUS.get_or_init(current_cpus);
    // SAFETY: cpu_set_t is plain data; CPU_* only touch the set; sched_setaffinity(0, ..)
    // applies to the calling thread.
    unsafe {
        let set = match cpu {
            Some(c) => {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(c, &mut set);
                set
            }
            None => orig,
        };
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// Busy CPU ticks (user, nice, system) of the whole machine, from the first line of
/// `/proc/stat`.
fn machine_busy_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system (guest time is inside user). Interrupt and softirq time is left out:
    // the loopback traffic of this program's own processes is handled there.
    Some(f.first()? + f.get(1)? + f.get(2)?)
}

/// CPU ticks of this process and of its children that have been waited for.
fn own_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|x| x.parse().ok())
        .collect();
    (f.len() == 4).then(|| f.iter().sum())
}

/// Measures how much CPU *other* processes on the machine used during a stretch of the run:
/// the machine's busy time minus this process's and its reaped children's. Every child of the
/// stretch must have exited (and been waited for) before [`CpuMeter::foreign_cores`].
pub struct CpuMeter {
    machine: Option<u64>,
    own: Option<u64>,
    at: std::time::Instant,
}

impl CpuMeter {
    /// Starts measuring.
    pub fn start() -> CpuMeter {
        CpuMeter {
            machine: machine_busy_ticks(),
            own: own_ticks(),
            at: std::time::Instant::now(),
        }
    }

    /// Wall time since the start, and the CPUs other processes kept busy on average (1.0 =
    /// one CPU) since then.
    pub fn foreign_cores(&self) -> (Duration, Option<f64>) {
        let wall = self.at.elapsed();
        let cores = (|| {
            let m = machine_busy_ticks()?.checked_sub(self.machine?)?;
            let o = own_ticks()?.checked_sub(self.own?)?;
            Some(m.saturating_sub(o) as f64 / clock_ticks_per_s() / wall.as_secs_f64())
        })();
        (wall, cores)
    }
}

/// How long the phases of a run are: the full run, `--quick` (short, rough numbers) or
/// `--smoke` (tiny counts: checks that every phase works, measures nothing worth reading).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scale {
    Full,
    Quick,
    Smoke,
}

impl Scale {
    /// The value for this scale.
    pub fn pick<T>(self, full: T, quick: T, smoke: T) -> T {
        match self {
            Scale::Full => full,
            Scale::Quick => quick,
            Scale::Smoke => smoke,
        }
    }

    /// True for the short scales (quick and smoke).
    pub fn short(self) -> bool {
        self != Scale::Full
    }
}
