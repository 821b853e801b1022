//! The ZooKeeper side of the replicated-group comparison: a three-member Apache ZooKeeper
//! ensemble on loopback (Debian's `zookeeper` package, each member a JVM of its own with its
//! own data directory), and the Python that runs `tests/bench/zk_worker.py` (kazoo's `Lock`
//! recipe). `tests/bench/zk-setup.sh` installs both.
//!
//! Each member is started as `java -Xmx512m -cp /usr/share/java/zookeeper.jar:…
//! org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg` (what Debian's `zkServer.sh`
//! runs; the jar's manifest names its dependencies, slf4j-simple is added so the log goes to
//! the member's stderr, `<dir>/zk<i>/zk.log`). Its `zoo.cfg`:
//!
//! | setting | value | why |
//! | --- | --- | --- |
//! | `tickTime` | 200 ms | ZooKeeper's default is 2000 ms. Its failure detection is in ticks: the leader pings followers every tickTime/2 and a follower gives up on a silent leader after `syncLimit` ticks. 200 ms with `syncLimit=5` is a 100 ms heartbeat and a 1 s failure timeout, etcd's defaults (heartbeat 100 ms, election timeout 1 s), which is what an operator who wants fast failover would plausibly set; the default (2000 ms × 5 = 10 s) would compare ZooKeeper's out-of-the-box timing with tuned peers. (A member killed on loopback closes its sockets, so its peers notice at once: after a `kill -9` the pause is the election, ZooKeeper's fast leader election with its 200 ms notification wait, plus the new leader's sync, 0.4–1.2 s measured here) |
//! | `initLimit` | 10 (2 s) | default count; a follower's first sync with a new leader (tiny data here) |
//! | `syncLimit` | 5 (1 s) | default count, see `tickTime` |
//! | `maxSessionTimeout` | 60000 ms | the default, 20 ticks (4 s here), would silently shorten the clients' 10 s sessions; sessions keep the length the client asks for, as with the default tick |
//! | `forceSync` | yes | the default, written out: every transaction is fsynced before it is acknowledged, as tenure and etcd do |
//! | `maxClientCnxns` | 0 (no limit) | every client connects from 127.0.0.1; the default of 60 per address would refuse the 64-client throughput run |
//! | `clientPortAddress` | 127.0.0.1 | loopback only; the quorum and election ports are on 127.0.0.1 too (`server.N=127.0.0.1:…`) |
//! | `4lw.commands.whitelist` | srvr,stat,mntr,ruok | `srvr` tells a member's mode (leader, follower) |
//! | `admin.enableServer` | false | no Jetty admin server (it would want port 8080) |
//!
//! Everything else (leader election, `leaderServes`, snapshots, preallocation) is ZooKeeper's
//! default. Members are killed with the orchestrator (see [`crate::child`]) and when the
//! [`Zk`] is dropped.

use crate::child::Child;
use crate::util::free_port;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// ZooKeeper's server jar from Debian's `libzookeeper-java` (its manifest's `Class-Path`
/// names the jars it depends on).
const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";
/// slf4j's simple binding (Debian's `libslf4j-java`, a dependency of ZooKeeper): the
/// members' log goes to stderr. Without it slf4j logs nothing.
const SLF4J_SIMPLE: &str = "/usr/share/java/slf4j-simple.jar";
/// The main class Debian's `zkServer.sh` starts.
const MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
/// How long one four-letter-word exchange may take (connect, send, read to the end).
const FLW_TIMEOUT: Duration = Duration::from_millis(500);

/// A running ZooKeeper ensemble on loopback.
pub struct Zk {
    members: Vec<Member>,
    /// The client endpoints, `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3` (kazoo's `hosts`).
    pub hosts: String,
    /// The members' version, e.g. `3.8.0 (Debian zookeeper 3.8.0-11+deb12u2)`.
    pub version: String,
}

/// One member: its files, its client port, its process while it runs.
struct Member {
    /// `<dir>/zk<i>`: `zoo.cfg`, `data/` (with `myid`), the logs.
    dir: PathBuf,
    client_port: u16,
    child: Option<Child>,
    /// How many times it was started (names the log of each start).
    starts: usize,
}

/// `Ok` when ZooKeeper (its jar and `java`) and a Python with kazoo ([`python`]) are
/// installed; otherwise why not (`tests/bench/zk-setup.sh` installs them).
pub fn available() -> Result<(), String> {
    if !Path::new(ZK_JAR).exists() {
        return Err(format!(
            "ZooKeeper is not installed ({ZK_JAR} missing; Debian's zookeeper package, \
             tests/bench/zk-setup.sh)"
        ));
    }
    let java = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(java, Ok(s) if s.success()) {
        return Err("java is not installed (ZooKeeper needs it)".into());
    }
    let py = python();
    let kazoo = Command::new(&py)
        .args(["-c", "import kazoo"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match kazoo {
        Ok(s) if s.success() => Ok(()),
        _ => Err(format!(
            "kazoo is not installed for {py} (tests/bench/zk-setup.sh installs it)"
        )),
    }
}

/// The Python that runs `zk_worker.py`: the repository's venv, `target/py-venv/bin/python`
/// (where `tests/bench/zk-setup.sh` installs kazoo). [`available`] checks that kazoo
/// imports there.
pub fn python() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The repository's root is canonicalized, not the interpreter: that would resolve the
    // venv's symlink to the base Python, which does not see the venv's packages.
    let root = root.canonicalize().unwrap_or(root);
    root.join("target/py-venv/bin/python")
        .to_string_lossy()
        .into_owned()
}

/// Starts `n` members (3 for the comparison) on free loopback ports with their files under
/// `dir`, and waits (at most 60 s) until every member serves as leader or follower and
/// exactly one leads. Member directories left in `dir` by an earlier run are replaced.
pub fn start(dir: &Path, n: usize) -> Result<Zk, String> {
    available()?;
    if n == 0 {
        return Err("a ZooKeeper ensemble needs at least one member".into());
    }
    // Three ports per member (client, quorum, election), all different.
    let mut seen = HashSet::new();
    let mut ports = Vec::with_capacity(3 * n);
    while ports.len() < 3 * n {
        let p = free_port().map_err(|e| format!("free port: {e}"))?;
        if seen.insert(p) {
            ports.push(p);
        }
    }
    let servers: String = (0..n)
        .map(|i| {
            format!(
                "server.{}=127.0.0.1:{}:{}\n",
                i + 1,
                ports[3 * i + 1],
                ports[3 * i + 2]
            )
        })
        .collect();
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        let mdir = dir.join(format!("zk{i}"));
        if mdir.exists() {
            std::fs::remove_dir_all(&mdir).map_err(|e| format!("{}: {e}", mdir.display()))?;
        }
        let data = mdir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        std::fs::write(data.join("myid"), format!("{}\n", i + 1))
            .map_err(|e| format!("myid: {e}"))?;
        let cfg = format!(
            "# Written by tenure-bench (tests/bench/src/zk.rs says why).\n\
             tickTime=200\n\
             initLimit=10\n\
             syncLimit=5\n\
             maxSessionTimeout=60000\n\
             forceSync=yes\n\
             maxClientCnxns=0\n\
             dataDir={}\n\
             clientPort={}\n\
             clientPortAddress=127.0.0.1\n\
             4lw.commands.whitelist=srvr,stat,mntr,ruok\n\
             admin.enableServer=false\n\
             {}",
            data.display(),
            ports[3 * i],
            if n > 1 { servers.as_str() } else { "" }
        );
        std::fs::write(mdir.join("zoo.cfg"), cfg).map_err(|e| format!("zoo.cfg: {e}"))?;
        members.push(Member {
            dir: mdir,
            client_port: ports[3 * i],
            child: None,
            starts: 0,
        });
    }
    let hosts = members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect::<Vec<_>>()
        .join(",");
    let mut zk = Zk {
        members,
        hosts,
        version: String::new(),
    };
    for i in 0..n {
        zk.spawn(i)?;
    }
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let modes: Vec<Option<String>> = (0..n).map(|i| zk.mode(i)).collect();
        let serving = modes
            .iter()
            .all(|m| matches!(m.as_deref(), Some("leader" | "follower" | "standalone")));
        let leaders = modes
            .iter()
            .filter(|m| matches!(m.as_deref(), Some("leader" | "standalone")))
            .count();
        if serving && leaders == 1 {
            break;
        }
        if Instant::now() > end {
            return Err(format!(
                "ZooKeeper: the ensemble did not form within 60 s (modes {modes:?}; logs in {})",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    zk.version = version(&zk);
    Ok(zk)
}

/// The members' version as `srvr` reports it (`3.8.0`: Debian's build leaves
/// `-${mvngit.commit.id}` and the build date after it), with Debian's package version when
/// `dpkg-query` knows it: `3.8.0 (Debian zookeeper 3.8.0-11+deb12u2)`.
fn version(zk: &Zk) -> String {
    let v = (0..zk.members.len())
        .find_map(|i| {
            let out = four_letter(zk.members[i].client_port, "srvr")?;
            let v = out.lines().next()?.strip_prefix("Zookeeper version: ")?;
            let v = v.split(',').next()?;
            Some(v.split("-${").next()?.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let deb = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "zookeeper"])
        .stderr(Stdio::null())
        .output();
    match deb {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            format!(
                "{v} (Debian zookeeper {})",
                String::from_utf8_lossy(&o.stdout).trim()
            )
        }
        _ => v,
    }
}

impl Zk {
    /// Starts member `i`'s JVM (its log: `zk.log`, then `zk.<k>.log` for the k-th restart).
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let m = &mut self.members[i];
        let log = if m.starts == 0 {
            m.dir.join("zk.log")
        } else {
            m.dir.join(format!("zk.{}.log", m.starts))
        };
        let mut cp = ZK_JAR.to_string();
        if Path::new(SLF4J_SIMPLE).exists() {
            cp.push(':');
            cp.push_str(SLF4J_SIMPLE);
        }
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xmx512m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
            "-cp",
            &cp,
            MAIN,
        ])
        .arg(m.dir.join("zoo.cfg"))
        .current_dir(&m.dir);
        m.child = Some(Child::spawn(
            &format!("zookeeper {}", i + 1),
            cmd,
            Some(&log),
        )?);
        m.starts += 1;
        Ok(())
    }

    /// Member `i`'s mode as `srvr` reports it (`leader`, `follower`, `standalone`), or
    /// `None` when it is not running, does not answer within [`FLW_TIMEOUT`], or is not
    /// serving (during an election).
    fn mode(&self, i: usize) -> Option<String> {
        let m = &self.members[i];
        m.child.as_ref()?;
        let out = four_letter(m.client_port, "srvr")?;
        out.lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(|s| s.trim().to_string())
    }

    /// The index of the current leader: the one running member whose `srvr` says
    /// `Mode: leader` (or `standalone`). `None` during an election, or if more than one
    /// says so. Each member is asked with a 500 ms limit.
    pub fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = (0..self.members.len())
            .filter(|&i| matches!(self.mode(i).as_deref(), Some("leader" | "standalone")))
            .collect();
        match leaders[..] {
            [l] => Some(l),
            _ => None,
        }
    }

    /// Sends `kill -9` to member `i` (nothing if it is not running).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill9();
        }
    }

    /// Starts member `i` again with the same `zoo.cfg` and data (killing it first if it
    /// still runs) and waits (at most 30 s) until it serves as follower or leader.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        self.spawn(i)?;
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if matches!(
                self.mode(i).as_deref(),
                Some("leader" | "follower" | "standalone")
            ) {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(format!(
                    "ZooKeeper member {} did not serve within 30 s of its restart (log in {})",
                    i + 1,
                    self.members[i].dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Member `i`'s process id while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::pid)
    }

    /// Member `i`'s client endpoint, `127.0.0.1:PORT`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }
}

/// Sends a four-letter word to the member on `127.0.0.1:port` and returns its whole answer;
/// `None` on any failure or when it takes longer than [`FLW_TIMEOUT`].
fn four_letter(port: u16, word: &str) -> Option<String> {
    let end = Instant::now() + FLW_TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, FLW_TIMEOUT).ok()?;
    s.set_write_timeout(Some(FLW_TIMEOUT)).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
