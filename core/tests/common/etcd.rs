//! Real etcd processes for the etcd backend's tests: Debian's `etcd` (etcd-server) on
//! loopback ports with temporary data directories, killed, paused and restarted; `etcdctl`
//! (etcd-client) for what an operator would do from outside. Every wait is bounded.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One member of a test cluster.
pub struct Member {
    /// Its name in the cluster.
    pub name: String,
    /// Where clients reach it (`host:port`).
    pub client: String,
    peer: String,
    dir: PathBuf,
    proc: Option<Child>,
}

/// An etcd cluster of one or more members on loopback.
pub struct Etcd {
    /// The members, in start order.
    pub members: Vec<Member>,
    dir: PathBuf,
    token: String,
}

impl Etcd {
    /// Starts `n` members and waits (at most 30 s) until the cluster answers.
    pub fn start(n: usize) -> Etcd {
        assert!(
            Command::new("etcd").arg("--version").output().is_ok(),
            "etcd is not installed (Debian: apt-get install etcd-server etcd-client); \
             tests/run-all.sh installs it"
        );
        let dir = super::tmpdir("etcd");
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                dir: dir.join(format!("m{i}")),
                proc: None,
            })
            .collect();
        let mut e = Etcd {
            members,
            dir,
            token: format!("tenure-test-{}", fastrand::u64(..)),
        };
        for i in 0..n {
            e.spawn(i);
        }
        e.wait_healthy(Duration::from_secs(30));
        e
    }

    /// Starts member `i` (again, after [`Etcd::kill`]: on its data directory).
    pub fn spawn(&mut self, i: usize) {
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let m = &mut self.members[i];
        std::fs::create_dir_all(&m.dir).unwrap();
        let c = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(m.dir.join("data"))
            .args(["--listen-client-urls", &format!("http://{}", m.client)])
            .args(["--advertise-client-urls", &format!("http://{}", m.client)])
            .args(["--listen-peer-urls", &format!("http://{}", m.peer)])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{}", m.peer),
            ])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        m.proc = Some(c);
    }

    /// `etcd://` endpoints of every member, from member `first` on.
    pub fn endpoints_from(&self, first: usize) -> Vec<String> {
        let n = self.members.len();
        (0..n)
            .map(|k| format!("etcd://{}", self.members[(first + k) % n].client))
            .collect()
    }

    /// `etcd://` endpoints of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints_from(0)
    }

    /// The members' client addresses for etcdctl (`--endpoints`), of the live ones.
    fn ctl_endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.proc.is_some())
            .map(|m| format!("http://{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs etcdctl against the live members; its stdout, or a panic with its stderr.
    pub fn ctl(&self, args: &[&str]) -> String {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.ctl_endpoints(), "--command-timeout=5s"])
            .args(args)
            .output()
            .expect("etcdctl runs (Debian: apt-get install etcd-client)");
        assert!(
            o.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Waits until every live member answers and one leads.
    pub fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.ctl_endpoints(), "--command-timeout=2s"])
                .args(["endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok && self.leader().is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the leading member, as the live members report it.
    pub fn leader(&self) -> Option<usize> {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.ctl_endpoints(), "--command-timeout=2s"])
            .args(["endpoint", "status", "-w", "json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        for s in v.as_array()? {
            let leader = s["Status"]["leader"].as_u64()?;
            let me = s["Status"]["header"]["member_id"].as_u64()?;
            if leader == me {
                let ep = s["Endpoint"].as_str()?;
                return self.members.iter().position(|m| ep.ends_with(&m.client));
            }
        }
        None
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].proc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILLs member `i` and deletes its data: started again with [`Etcd::spawn`], it is a
    /// new, empty cluster on the same addresses.
    pub fn wipe(&mut self, i: usize) {
        self.kill(i);
        let _ = std::fs::remove_dir_all(self.members[i].dir.join("data"));
    }

    /// The pid of member `i`.
    pub fn pid(&self, i: usize) -> i32 {
        self.members[i].proc.as_ref().expect("member runs").id() as i32
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
