//! The checker: reads the clients' histories and the nemesis's log and reports what breaks
//! tenure's guarantees (SPEC 3.2, 3.6, 3.7):
//!
//! 1. **Tokens**: every grant has a token of its own (a grant lost in a failover would let
//!    the group hand its revision out again).
//! 2. **Lost before the next grant**: for each lock, the holder of a grant stops believing
//!    (it is told `lock_lost`, or it releases, or its process dies) before the next grant
//!    reaches its client, unless the nemesis paused that holder's process meanwhile (a
//!    stopped process runs no callback; fencing covers it).
//! 3. **A believer's write is never refused**: a write made while the writer believed it
//!    held the lock (it checks `is_held()` first) and was not paused since its grant is
//!    accepted by the fenced resource; a refusal means a newer holder wrote while it
//!    believed (two holders at once).
//! 4. **No data_lost**: the nemesis never loses a majority's data, so no client may be told
//!    its data was lost (an incarnation changing under a wiped member would be).

use std::collections::{BTreeMap, HashMap};

/// What a client's history says, line by line.
#[derive(Debug, Clone)]
pub struct Line {
    pub t: u64,
    pub pid: u32,
    pub kind: String,
    pub name: String,
    pub token: u64,
    pub extra: String,
}

/// Parses one history file (lines that do not parse, a torn last line, are skipped).
pub fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (t, pid, kind) = (
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                *f.get(2)?,
            );
            let name = f.get(3).map_or("", |s| s).to_string();
            let token = f.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
            let extra = f.get(5).map_or("", |s| s).to_string();
            Some(Line {
                t,
                pid,
                kind: kind.to_string(),
                name,
                token,
                extra,
            })
        })
        .collect()
}

/// What the nemesis did to client processes, by pid: kills (times) and pauses (from, to).
/// A pid is reused over a long run (pid_max is 32,768 here), so a pid can have several
/// kills: a holder's death is the first kill of its pid at or after its grant (no other
/// process has that pid while it lives).
#[derive(Debug, Default)]
pub struct ClientFaults {
    pub killed: HashMap<u32, Vec<u64>>,
    pub paused: HashMap<u32, Vec<(u64, u64)>>,
}

impl ClientFaults {
    fn paused_between(&self, pid: u32, from: u64, to: u64) -> bool {
        self.paused
            .get(&pid)
            .is_some_and(|v| v.iter().any(|&(a, b)| a <= to && b >= from))
    }
}

/// Counts and violations.
#[derive(Debug, Default)]
pub struct Outcome {
    pub grants: usize,
    pub writes_ok: usize,
    pub writes_stale: usize,
    pub lost: usize,
    pub exempt_paused: usize,
    pub violations: Vec<String>,
}

pub fn check(lines: &[Line], faults: &ClientFaults) -> Outcome {
    let mut out = Outcome::default();
    // 1. Tokens.
    let mut by_token: BTreeMap<u64, &Line> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.kind == "G") {
        out.grants += 1;
        if let Some(o) = by_token.insert(l.token, l) {
            out.violations.push(format!(
                "token {} granted twice: {:?} to pid {} and {:?} to pid {}",
                l.token, o.name, o.pid, l.name, l.pid
            ));
        }
    }
    // When each grant's belief ended: the first of its `E`, `L` and its process's death.
    let key = |l: &Line| (l.pid, l.name.clone(), l.token);
    let mut ended: HashMap<(u32, String, u64), u64> = HashMap::new();
    for l in lines.iter().filter(|l| l.kind == "E" || l.kind == "L") {
        if l.kind == "L" {
            out.lost += 1;
        }
        let e = ended.entry(key(l)).or_insert(l.t);
        *e = (*e).min(l.t);
    }
    // 2. Lost before the next grant, per lock, grants in token order.
    let mut per_name: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for l in by_token.values() {
        per_name.entry(l.name.as_str()).or_default().push(l);
    }
    for (name, gs) in &per_name {
        for w in gs.windows(2) {
            let (a, b) = (w[0], w[1]);
            let death = faults
                .killed
                .get(&a.pid)
                .and_then(|v| v.iter().copied().filter(|d| *d >= a.t).min());
            let end = [ended.get(&key(a)).copied(), death]
                .into_iter()
                .flatten()
                .min();
            if faults.paused_between(a.pid, a.t, b.t) {
                out.exempt_paused += 1;
                continue;
            }
            match end {
                Some(e) if e <= b.t => {}
                Some(e) => out.violations.push(format!(
                    "{name:?}: pid {} held token {} until {:.3} ms after pid {} was granted \
                     token {}",
                    a.pid,
                    a.token,
                    (e - b.t) as f64 / 1e6,
                    b.pid,
                    b.token
                )),
                None => out.violations.push(format!(
                    "{name:?}: pid {} was never told it lost token {} (next grant: token {} \
                     to pid {})",
                    a.pid, a.token, b.token, b.pid
                )),
            }
        }
    }
    // 3. A believer's write is never refused.
    let granted_at: HashMap<(u32, String, u64), u64> = lines
        .iter()
        .filter(|l| l.kind == "G")
        .map(|l| (key(l), l.t))
        .collect();
    for l in lines.iter().filter(|l| l.kind == "W") {
        match l.extra.as_str() {
            "ok" => out.writes_ok += 1,
            "stale" => {
                out.writes_stale += 1;
                let since = granted_at.get(&key(l)).copied().unwrap_or(0);
                if !faults.paused_between(l.pid, since, l.t) {
                    out.violations.push(format!(
                        "pid {} believed it held {:?} with token {} and its write was refused: \
                         a newer holder had written",
                        l.pid, l.name, l.token
                    ));
                }
            }
            _ => {}
        }
    }
    // 4. No data_lost.
    for l in lines.iter().filter(|l| l.kind == "D") {
        out.violations
            .push(format!("pid {} was told data_lost at {}", l.pid, l.t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(t: u64, pid: u32, kind: &str, name: &str, token: u64, extra: &str) -> String {
        format!("{t} {pid} {kind} {name} {token} {extra}")
    }

    #[test]
    fn the_checker_finds_what_it_is_for() {
        // A clean hand-over: released before the next grant.
        let ok = [
            l(10, 1, "G", "a", 5, ""),
            l(11, 1, "W", "a", 5, "ok"),
            l(12, 1, "E", "a", 5, ""),
            l(20, 2, "G", "a", 6, ""),
        ]
        .join("\n");
        let o = check(&parse(&ok), &ClientFaults::default());
        assert!(o.violations.is_empty(), "{:?}", o.violations);
        // Told too late, a token twice, a believer refused, data lost.
        let bad = [
            l(10, 1, "G", "a", 5, ""),
            l(20, 2, "G", "a", 6, ""),
            l(25, 1, "L", "a", 5, "session_expired"),
            l(30, 3, "G", "b", 7, ""),
            l(31, 3, "W", "b", 7, "stale"),
            l(35, 4, "G", "b", 7, ""),
            l(40, 3, "D", "", 0, ""),
        ]
        .join("\n");
        let o = check(&parse(&bad), &ClientFaults::default());
        assert_eq!(o.violations.len(), 4, "{:?}", o.violations);
        // A paused holder is exempt; a killed one stopped believing when it died.
        let mut f = ClientFaults::default();
        f.paused.insert(1, vec![(15, 30)]);
        let paused = [l(10, 1, "G", "a", 5, ""), l(20, 2, "G", "a", 6, "")].join("\n");
        assert!(check(&parse(&paused), &f).violations.is_empty());
        let mut f = ClientFaults::default();
        f.killed.insert(1, vec![15]);
        assert!(check(&parse(&paused), &f).violations.is_empty());
        // Its pid reused by a process killed later: the holder's death is still its own.
        f.killed.insert(1, vec![15, 90]);
        assert!(check(&parse(&paused), &f).violations.is_empty());
        f.killed.insert(1, vec![90, 5]);
        assert_eq!(
            check(&parse(&paused), &f).violations.len(),
            1,
            "killed after"
        );
        assert_eq!(
            check(&parse(&paused), &ClientFaults::default())
                .violations
                .len(),
            1,
            "never told"
        );
    }
}
