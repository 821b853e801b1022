//! Child processes of the orchestrator: the bench binary itself re-executed as a worker, the
//! `tenure` server, etcd. Every child is killed when its handle is dropped, gets SIGKILL if the
//! orchestrator dies (`PR_SET_PDEATHSIG`), and is killed by the watchdog when the whole run
//! overstays its time limit. Every read from a child has a timeout.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pids of live children, for the watchdog.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A running child process whose stdout is read line by line.
pub struct Child {
    name: String,
    child: std::process::Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Child {
    /// Re-executes this binary as `tenure-bench worker <args...>`.
    pub fn worker(name: &str, args: &[String]) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("worker").args(args);
        Child::spawn(name, cmd, None)
    }

    /// Like [`Child::worker`]; with `cpu = Some(c)` the worker is started by
    /// `taskset -c c` (util-linux), so it and every thread it makes run on CPU `c` only; with
    /// `exe`, the worker is another build's `tenure-bench` (how `--compare` runs the other
    /// build's clients).
    pub fn worker_of(
        exe: Option<&Path>,
        name: &str,
        args: &[String],
        cpu: Option<usize>,
    ) -> Result<Child, String> {
        let exe = match exe {
            Some(e) => e.to_path_buf(),
            None => std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
        };
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(c.to_string()).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.arg("worker").args(args);
        Child::spawn(name, cmd, None)
    }

    /// Starts `cmd` with piped stdin and stdout; stderr goes to `stderr_file` when given (and
    /// is inherited otherwise). The child dies with the orchestrator.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        stderr_file: Option<&Path>,
    ) -> Result<Child, String> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        match stderr_file {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?;
                cmd.stderr(Stdio::from(f));
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        LIVE.lock().unwrap().push(child.id());
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("out-{name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send(l).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Child {
            name: name.to_string(),
            child,
            lines: rx,
            stdin,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child prints, waiting at most `timeout`.
    pub fn line(&self, timeout: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "{}: no output within {:.1} s",
                self.name,
                timeout.as_secs_f64()
            )),
            Err(RecvTimeoutError::Disconnected) => Err(format!(
                "{}: exited before printing what was expected",
                self.name
            )),
        }
    }

    /// The next line that starts with `prefix` (other lines are skipped), within `timeout`.
    pub fn line_starting(&self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let l = self.line(left.max(Duration::from_millis(1)))?;
            if l.starts_with(prefix) {
                return Ok(l);
            }
        }
    }

    /// Sends SIGKILL to the child now (and reaps it).
    pub fn kill9(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Writes one line to the child's stdin.
    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let s = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: stdin closed", self.name))?;
        writeln!(s, "{line}")
            .and_then(|_| s.flush())
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// Waits up to `timeout` for the child to exit by itself; kills it otherwise.
    pub fn finish(mut self, timeout: Duration) -> Result<(), String> {
        self.stdin = None;
        let end = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(format!("{} exited with {st}", self.name)),
                Ok(None) if Instant::now() >= end => {
                    return Err(format!("{} did not exit in time; killed", self.name))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("{}: {e}", self.name)),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let pid = self.child.id();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        LIVE.lock().unwrap().retain(|p| *p != pid);
    }
}

/// Restricts every thread of the running process `pid` to the CPUs in `list` (taskset's
/// syntax, "1" or "0-3") with `taskset -a -p -c`.
pub fn taskset_pid(pid: u32, list: &str) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", list, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("taskset: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset -a -p -c {list} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Kills every live child with SIGKILL (used by the watchdog and on fatal errors).
pub fn kill_all() {
    let pids = LIVE.lock().map(|v| v.clone()).unwrap_or_default();
    for p in pids {
        // SAFETY: kill has no memory-safety preconditions; p is a child we started.
        unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
    }
}

/// Ends the whole program (status 2) after `limit`, killing every child first.
pub fn start_watchdog(limit: Duration) {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!(
                "tenure-bench: time limit of {} s reached; killing children and stopping",
                limit.as_secs()
            );
            kill_all();
            std::process::exit(2);
        })
        .expect("watchdog thread");
}
