//! Elections end to end: a real server, real clients, in one process.

mod common;
use common::*;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tenure::client::{Candidacy, MasterState};
use tenure::{Error, Event};

fn master_id(m: &MasterState) -> Option<&str> {
    m.master.as_ref().map(|m| m.id.as_str())
}

/// (epoch, master id) of each master_changed event seen.
type Seen = Arc<Mutex<Vec<(u64, Option<String>)>>>;

/// Collects (epoch, master id) of master_changed events.
fn recorder() -> (Seen, impl Fn(Event) + Send + Sync) {
    let seen = Arc::new(Mutex::new(vec![]));
    let s2 = seen.clone();
    (seen, move |ev| {
        if let Event::MasterChanged { epoch, master, .. } = ev {
            s2.lock().push((epoch, master.map(|m| m.id)));
        }
    })
}

#[test]
fn priorities_no_preemption_failover_to_the_highest_and_increasing_epochs() {
    let dir = tmpdir("elect");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let watcher = client(&addr, 2000);
    let obs = watcher.observe("sched").unwrap();
    let (seen, cb) = recorder();
    obs.on_master_change(cb);
    assert_eq!(master_id(&obs.master()), None);

    let c1 = client(&addr, 2000);
    let e1 = c1.campaign("sched", Candidacy::new("one", 1)).unwrap();
    wait_for(Duration::from_secs(5), "one is master", || e1.is_master());
    let first_epoch = e1.master_epoch().unwrap();
    assert!(first_epoch > 0);

    let c2 = client(&addr, 2000);
    let e2 = c2.campaign("sched", Candidacy::new("two", 2)).unwrap();
    let c3 = client(&addr, 2000);
    let e3 = c3.campaign("sched", Candidacy::new("three", 3)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(e1.is_master(), "a live master is kept without preempt");
    assert!(!e2.is_master() && !e3.is_master());
    assert_eq!(master_id(&e3.master()), Some("one"));

    // Anyone can ask; the cache answers.
    let asked = watcher
        .request_election("sched", Duration::from_secs(2))
        .unwrap();
    assert_eq!(master_id(&asked), Some("one"));

    // The master's session ends: the highest remaining priority takes over.
    c1.close();
    wait_for(Duration::from_secs(5), "three is master", || e3.is_master());
    assert!(!e2.is_master());
    assert!(e3.master_epoch().unwrap() > first_epoch);
    wait_for(Duration::from_secs(5), "observer saw three", || {
        seen.lock()
            .last()
            .map(|x| x.1.as_deref() == Some("three"))
            .unwrap_or(false)
    });
    let epochs: Vec<u64> = seen.lock().iter().map(|x| x.0).collect();
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "epochs increase: {epochs:?}"
    );

    // Resigning hands over at once.
    e3.resign().unwrap();
    wait_for(Duration::from_secs(5), "two is master", || e2.is_master());
    drop(e2);
    wait_for(Duration::from_secs(5), "no master", || {
        master_id(&obs.master()).is_none() && obs.master().epoch > 0
    });
    let st = watcher
        .request_election("sched", Duration::from_secs(2))
        .unwrap();
    assert_eq!(master_id(&st), None);
}

#[test]
fn preempt_lets_a_higher_priority_take_over() {
    let dir = tmpdir("preempt");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 2000);
    let ea = a.campaign("p", Candidacy::new("low", 1)).unwrap();
    wait_for(Duration::from_secs(5), "low master", || ea.is_master());
    let b = client(&addr, 2000);
    let mut c = Candidacy::new("high", 5);
    c.preempt = true;
    let eb = b.campaign("p", c).unwrap();
    wait_for(Duration::from_secs(5), "high takes over", || eb.is_master());
    wait_for(Duration::from_secs(5), "low told", || !ea.is_master());
    assert_eq!(master_id(&ea.master()), Some("high"));
}

#[test]
fn an_unreachable_endpoint_is_skipped_and_a_reachable_one_designated() {
    let dir = tmpdir("ping");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    // A listening endpoint for the reachable candidate.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good = listener.local_addr().unwrap().to_string();
    // A closed port for the unreachable one.
    let bad = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let c1 = client(&addr, 2000);
    let c2 = client(&addr, 2000);
    let watcher = client(&addr, 2000);
    let obs = watcher.observe("svc").unwrap();
    // Register the unreachable high-priority candidate and the reachable one "at once":
    // the first registration triggers a designation; either way the reachable one wins.
    let mut hi = Candidacy::new("unreachable", 10);
    hi.endpoint = Some(bad);
    let e_hi = c1.campaign("svc", hi).unwrap();
    let mut lo = Candidacy::new("reachable", 1);
    lo.endpoint = Some(good.clone());
    let e_lo = c2.campaign("svc", lo).unwrap();
    wait_for(Duration::from_secs(5), "reachable designated", || {
        e_lo.is_master()
    });
    assert!(!e_hi.is_master());
    let m = obs.master();
    assert_eq!(m.master.unwrap().endpoint.as_deref(), Some(good.as_str()));
}

#[test]
fn request_election_by_a_non_candidate_designates_and_returns_the_master() {
    let dir = tmpdir("request");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let asker = client(&addr, 2000);
    let none = asker
        .request_election("empty", Duration::from_secs(2))
        .unwrap();
    assert_eq!(none.master, None);
    let c = client(&addr, 2000);
    let _e = c.campaign("job", Candidacy::new("x", 1)).unwrap();
    let m = asker
        .request_election("job", Duration::from_secs(2))
        .unwrap();
    assert_eq!(master_id(&m), Some("x"));
    assert!(m.epoch > 0);
}

#[test]
fn master_survives_a_server_restart_and_bad_input_is_refused() {
    let dir = tmpdir("elect-restart");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let c = client(&addr, 3000);
    let e = c.campaign("r", Candidacy::new("m", 1)).unwrap();
    wait_for(Duration::from_secs(5), "master", || e.is_master());
    let epoch = e.master_epoch().unwrap();
    srv.stop().unwrap();
    let _srv = server_at(&dir, &addr);
    std::thread::sleep(Duration::from_millis(500));
    wait_for(Duration::from_secs(5), "still master", || e.is_master());
    assert_eq!(
        e.master_epoch(),
        Some(epoch),
        "no new epoch across a restart"
    );

    let other = client(&addr, 3000);
    assert!(
        matches!(
            other.campaign("r", Candidacy::new("m", 5)),
            Err(Error::InvalidArgument(_))
        ),
        "an id taken by another session"
    );
    for bad in [
        Candidacy::new("", 1),
        Candidacy::new("a\0", 1),
        Candidacy::new("x".repeat(300), 1),
    ] {
        assert!(matches!(
            other.campaign("r", bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    let mut c2 = Candidacy::new("ok", 1);
    c2.endpoint = Some("no-port".into());
    assert!(matches!(
        other.campaign("r", c2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        other.campaign("", Candidacy::new("ok", 1)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        other.observe("a\0"),
        Err(Error::InvalidArgument(_))
    ));
}
