//! Group membership end to end: probation, promotion, the application check, replacement
//! in a single view change, removal when a session ends.

mod common;
use common::*;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure::client::JoinOptions;
use tenure::{Error, Event};

type Log = Arc<Mutex<Vec<Event>>>;

fn log() -> (Log, impl Fn(Event) + Send + Sync) {
    let l: Log = Arc::new(Mutex::new(vec![]));
    let l2 = l.clone();
    (l, move |e| l2.lock().push(e))
}

fn kinds(l: &Log) -> Vec<String> {
    l.lock()
        .iter()
        .map(|e| match e {
            Event::ViewChanged { view, members, .. } => {
                let m: Vec<String> = members
                    .iter()
                    .map(|m| format!("{}{}", m.id, if m.full { "" } else { "?" }))
                    .collect();
                format!("view {view} [{}]", m.join(" "))
            }
            Event::MemberPromoted { member, .. } => format!("promoted {member}"),
            Event::MemberRemoved { member, .. } => format!("removed {member}"),
            e => e.kind().to_string(),
        })
        .collect()
}

#[test]
fn probation_then_promotion_check_gating_and_removal_on_failed_check() {
    let dir = tmpdir("groups");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let w = client(&addr, 3000);
    let watch = w.watch_group("g").unwrap();
    let (seen, cb) = log();
    watch.on_view_change(cb);

    let a = client(&addr, 3000);
    let joined = Instant::now();
    let ma = a
        .join("g", JoinOptions::new("a", Duration::from_millis(300)))
        .unwrap();
    assert!(ma.is_member() && !ma.is_full(), "joins on probation");
    wait_for(Duration::from_secs(15), "a promoted", || ma.is_full());
    let took = joined.elapsed();
    assert!(
        took >= Duration::from_millis(290),
        "promoted after {took:?}, before its probation"
    );

    let b = client(&addr, 3000);
    let mut ob = JoinOptions::new("b", Duration::from_millis(100));
    ob.needs_check = true;
    let mb = b.join("g", ob).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(!mb.is_full(), "waits for its application check");
    mb.report_check(true).unwrap();
    wait_for(
        Duration::from_secs(15),
        "b promoted after its check",
        || mb.is_full(),
    );

    let c = client(&addr, 3000);
    let mut oc = JoinOptions::new("c", Duration::from_millis(100));
    oc.needs_check = true;
    let mc = c.join("g", oc).unwrap();
    mc.report_check(false).unwrap();
    wait_for(Duration::from_secs(15), "c removed", || !mc.is_member());

    wait_for(Duration::from_secs(15), "watcher saw all", || {
        kinds(&seen).contains(&"removed c".to_string())
    });
    let k = kinds(&seen);
    assert!(k.contains(&"view 1 [a?]".to_string()), "{k:?}");
    assert!(k.contains(&"view 2 [a]".to_string()), "{k:?}");
    assert!(k.contains(&"promoted a".to_string()), "{k:?}");
    assert!(k.contains(&"promoted b".to_string()), "{k:?}");
    let views: Vec<u64> = seen
        .lock()
        .iter()
        .filter_map(|e| match e {
            Event::ViewChanged { view, .. } => Some(*view),
            _ => None,
        })
        .collect();
    assert!(views.windows(2).all(|x| x[0] < x[1]), "{views:?}");
}

#[test]
fn replace_is_a_single_view_change_and_a_session_end_removes_its_member() {
    let dir = tmpdir("replace");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 3000);
    let ma = a.join("g", JoinOptions::new("a", Duration::ZERO)).unwrap();
    wait_for(Duration::from_secs(15), "a full", || ma.is_full());
    let d = client(&addr, 3000);
    let md = d
        .join("g", JoinOptions::new("d", Duration::from_secs(3600)))
        .unwrap();
    let w = client(&addr, 3000);
    let watch = w.watch_group("g").unwrap();
    let (seen, cb) = log();
    watch.on_view_change(cb);
    wait_for(Duration::from_secs(15), "initial view", || {
        !seen.lock().is_empty()
    });
    let before = watch.view().number;

    // Bad replacements are refused and change nothing.
    assert!(matches!(
        w.replace("g", "d", "a"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        w.replace("g", "zz", "d"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        w.replace("nope", "a", "d"),
        Err(Error::InvalidArgument(_))
    ));

    let v = w.replace("g", "a", "d").unwrap();
    assert_eq!(v.number, before + 1, "one view change");
    assert_eq!(v.members.len(), 1);
    assert!(v.members[0].id == "d" && v.members[0].full);
    wait_for(Duration::from_secs(15), "d full", || md.is_full());
    wait_for(Duration::from_secs(15), "a told", || !ma.is_member());
    wait_for(Duration::from_secs(15), "watcher saw it", || {
        kinds(&seen).contains(&"removed a".to_string())
    });
    let k = kinds(&seen);
    let i = k
        .iter()
        .position(|x| x == &format!("view {} [d]", before + 1))
        .expect("single view");
    assert_eq!(
        &k[i + 1..i + 3],
        &["promoted d".to_string(), "removed a".to_string()],
        "{k:?}"
    );

    // d's session ends: it is removed.
    d.close();
    wait_for(Duration::from_secs(15), "d removed", || {
        kinds(&seen).contains(&"removed d".to_string())
    });
    assert!(watch.view().members.is_empty());

    // Bad input.
    assert!(matches!(
        w.join("", JoinOptions::new("x", Duration::ZERO)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        w.join("g", JoinOptions::new("", Duration::ZERO)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        w.join("g", JoinOptions::new("x", Duration::from_secs(10 * 86_400))),
        Err(Error::InvalidArgument(_))
    ));
}
