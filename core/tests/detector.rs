//! Failure detector (SPEC 3.4): the sans-IO core on scripted traces with a manual clock, and
//! the UDP runtime on loopback.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure::detector::{
    AdaptiveConfig, Detector, DetectorConfig, DetectorCore, Estimator, PhiConfig, Tracker,
    UdpConfig,
};
use tenure::{Clock, Error, Event, ManualClock, SuspicionKind};

const INTERVAL: Duration = Duration::from_millis(100);

/// A detector driven by a manual clock; polls at every wake-up it asks for and logs events
/// with their time in milliseconds since the start.
struct Run {
    core: DetectorCore,
    clock: ManualClock,
    log: Vec<(f64, Event)>,
}

impl Run {
    fn new(est: Estimator, nets: &[&str], peers: &[&str]) -> Run {
        let clock = ManualClock::new();
        let core = DetectorCore::new(
            DetectorConfig::new(INTERVAL).estimator(est),
            nets.iter().map(|s| s.to_string()).collect(),
            peers.iter().map(|s| s.to_string()).collect(),
            clock.now(),
        )
        .expect("valid configuration");
        Run {
            core,
            clock,
            log: Vec::new(),
        }
    }

    fn adaptive(nets: &[&str], peers: &[&str]) -> Run {
        Run::new(Estimator::default(), nets, peers)
    }

    fn ms(&self, i: Instant) -> f64 {
        (i - self.clock.start()).as_secs_f64() * 1000.0
    }

    /// Moves time to `ms`, polling at every wake-up on the way.
    fn advance(&mut self, ms: f64) {
        let target = self.clock.start() + Duration::from_secs_f64(ms / 1000.0);
        while let Some(w) = self.core.next_wakeup() {
            if w > target {
                break;
            }
            self.clock.set(w - self.clock.start());
            let evs = self.core.poll(w);
            let t = self.ms(w);
            self.log.extend(evs.into_iter().map(|e| (t, e)));
        }
        self.clock.set(target - self.clock.start());
        let evs = self.core.poll(target);
        self.log.extend(evs.into_iter().map(|e| (ms, e)));
    }

    fn hb(&mut self, ms: f64, peer: &str, net: &str) {
        self.advance(ms);
        let evs = self.core.on_heartbeat(peer, net, self.clock.now());
        self.log.extend(evs.into_iter().map(|e| (ms, e)));
    }

    /// Heartbeats every 100 ms from `from` to `to` (exclusive) for every peer on every
    /// network where `alive(peer, net, t)`; peer `i` is offset by `7 * i` ms and network `j`
    /// by `j` ms so that arrivals do not coincide.
    fn rounds(
        &mut self,
        from: f64,
        to: f64,
        peers: &[&str],
        nets: &[&str],
        alive: impl Fn(&str, &str, f64) -> bool,
    ) {
        let mut arrivals = Vec::new();
        let mut k = (from / 100.0).floor() as i64;
        loop {
            let base = k as f64 * 100.0;
            if base >= to {
                break;
            }
            for (i, p) in peers.iter().enumerate() {
                for (j, n) in nets.iter().enumerate() {
                    let t = base + 7.0 * i as f64 + j as f64;
                    if t >= from && t < to && alive(p, n, t) {
                        arrivals.push((t, *p, *n));
                    }
                }
            }
            k += 1;
        }
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (t, p, n) in arrivals {
            self.hb(t, p, n);
        }
        self.advance(to);
    }

    /// Events logged since the last call.
    fn take(&mut self) -> Vec<(f64, Event)> {
        std::mem::take(&mut self.log)
    }
}

fn events(log: &[(f64, Event)]) -> Vec<Event> {
    log.iter().map(|(_, e)| e.clone()).collect()
}

fn process(peer: &str) -> Event {
    Event::PeerSuspected {
        peer: peer.into(),
        kind: SuspicionKind::Process,
        network: None,
    }
}

fn path(peer: &str, net: &str) -> Event {
    Event::PeerSuspected {
        peer: peer.into(),
        kind: SuspicionKind::Network,
        network: Some(net.into()),
    }
}

fn recovered(peer: &str, net: Option<&str>) -> Event {
    Event::PeerRecovered {
        peer: peer.into(),
        network: net.map(Into::into),
    }
}

fn down(net: &str) -> Event {
    Event::NetworkDown {
        network: net.into(),
    }
}

fn up(net: &str) -> Event {
    Event::NetworkUp {
        network: net.into(),
    }
}

fn all(_: &str, _: &str, _: f64) -> bool {
    true
}

// ---- estimators -------------------------------------------------------------------------

/// p's arrivals jitter by up to 60 ms around a 100 ms schedule, then one heartbeat comes
/// 150 ms late (a 250 ms gap); q is regular. Returns the events and p's timeout just before
/// the late heartbeat.
fn jitter_trace(est: Estimator) -> (Vec<(f64, Event)>, Duration) {
    let mut r = Run::new(est, &["a"], &["p", "q"]);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut arrivals: Vec<(f64, &str)> = Vec::new();
    for k in 1..=100 {
        let j = if k == 99 {
            0.0
        } else if k == 100 {
            150.0
        } else {
            rng.f64() * 60.0
        };
        arrivals.push((k as f64 * 100.0 + j, "p"));
    }
    for k in 1..=120 {
        arrivals.push((k as f64 * 100.0 + 30.0, "q"));
    }
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut timeout_before = Duration::ZERO;
    for (t, peer) in arrivals {
        if peer == "p" && t > 10_000.0 {
            timeout_before = r.core.tracker("p", "a").unwrap().timeout();
        }
        r.hb(t, peer, "a");
    }
    r.advance(12_000.0);
    (r.take(), timeout_before)
}

#[test]
fn jitter_below_the_adaptive_timeout_is_no_suspicion_but_a_fixed_timeout_suspects() {
    let (log, timeout) = jitter_trace(Estimator::default());
    // 60 ms of uniform jitter gives a standard deviation of about 24 ms on the gaps: the
    // timeout grew from its 220 ms floor to well above the 250 ms gap.
    assert!(
        timeout > Duration::from_millis(260) && timeout < Duration::from_millis(400),
        "adaptive timeout {timeout:?}"
    );
    // The run ends with p silent from 10.15 s: only that final stop is suspected.
    let evs = events(&log);
    assert_eq!(evs, vec![process("p")], "{log:?}");
    assert!(log[0].0 > 10_150.0 + timeout.as_millis() as f64 - 1.0);

    // The same trace with a fixed timeout at the adaptive floor suspects p at the late
    // heartbeat, then sees it recover.
    let (log, _) = jitter_trace(Estimator::Fixed {
        timeout: Duration::from_millis(220),
    });
    let evs = events(&log);
    assert_eq!(
        evs,
        vec![process("p"), recovered("p", None), process("p")],
        "{log:?}"
    );
    assert!(log[0].0 < 10_150.0 && log[1].0 == 10_150.0, "{log:?}");
}

#[test]
fn the_timeout_moves_toward_its_target_by_bounded_steps() {
    let clock = ManualClock::new();
    let cfg = AdaptiveConfig::default();
    let mut t = Tracker::new(&Estimator::Adaptive(cfg), INTERVAL, clock.now());
    assert_eq!(
        t.timeout(),
        Duration::from_millis(220),
        "starts at the floor"
    );
    for _ in 0..50 {
        clock.advance(INTERVAL);
        t.on_arrival(clock.now());
    }
    assert_eq!(
        t.timeout(),
        Duration::from_millis(220),
        "regular: stays at the floor"
    );
    // One very late heartbeat: the target jumps, the timeout moves by at most 25 ms.
    clock.advance(Duration::from_millis(900));
    t.on_arrival(clock.now());
    assert_eq!(t.timeout(), Duration::from_millis(245));
    clock.advance(INTERVAL);
    t.on_arrival(clock.now());
    assert_eq!(t.timeout(), Duration::from_millis(270));
    // Back to regular: the late gap stays in the window, so the timeout keeps climbing to
    // its target; once that gap leaves the window the timeout comes down 2 ms at a time.
    let mut prev = t.timeout();
    let mut max = prev;
    for i in 0..300 {
        clock.advance(INTERVAL);
        t.on_arrival(clock.now());
        let now = t.timeout();
        let step = now.as_secs_f64() - prev.as_secs_f64();
        assert!(
            (-0.002 - 1e-9..=0.025 + 1e-9).contains(&step),
            "step {step} at {i}"
        );
        max = max.max(now);
        prev = now;
    }
    assert!(max > Duration::from_millis(400), "climbed to {max:?}");
    assert_eq!(t.timeout(), Duration::from_millis(220), "back at the floor");
}

#[test]
fn a_stop_is_detected_within_the_timeout() {
    let peers = ["p", "q", "r"];
    let mut r = Run::adaptive(&["a"], &peers);
    // p stops after its heartbeat at 10 s; q and r go on.
    r.rounds(0.0, 12_000.0, &peers, &["a"], |p, _, t| {
        p != "p" || t <= 10_000.0
    });
    let log = r.take();
    assert_eq!(events(&log), vec![process("p")], "{log:?}");
    let timeout = r.core.tracker("p", "a").unwrap().timeout();
    assert_eq!(timeout, Duration::from_millis(220));
    // Raised at the first heartbeat of another peer after the deadline (10.22 s): q's at
    // 10.307 s. That is 307 ms after p's last heartbeat, within the 400 ms target.
    assert_eq!(log[0].0, 10_307.0);
}

#[test]
fn phi_accrual_grows_with_silence_and_suspects_at_its_threshold() {
    let clock = ManualClock::new();
    let est = |threshold| {
        Estimator::PhiAccrual(PhiConfig {
            threshold,
            ..PhiConfig::default()
        })
    };
    let mut regular = Tracker::new(&est(8.0), INTERVAL, clock.now());
    let mut strict = Tracker::new(&est(2.0), INTERVAL, clock.now());
    let mut jittery = Tracker::new(&est(8.0), INTERVAL, clock.now());
    let mut rng = fastrand::Rng::with_seed(3);
    let mut jt = clock.now();
    for _ in 0..100 {
        clock.advance(INTERVAL);
        regular.on_arrival(clock.now());
        strict.on_arrival(clock.now());
        jt += Duration::from_millis(rng.u64(50..150));
        jittery.on_arrival(jt);
    }
    let last = clock.now();
    // Regular arrivals: mean 100 ms, standard deviation at its floor (10 ms).
    assert_eq!(regular.mean(), INTERVAL);
    let at = |ms: u64| last + Duration::from_millis(ms);
    assert!(
        (regular.phi(at(100)) - std::f64::consts::LOG10_2).abs() < 1e-3,
        "half a chance at the mean"
    );
    let mut prev = 0.0;
    for ms in (0..400).step_by(5) {
        let phi = regular.phi(at(ms));
        assert!(phi >= prev, "phi never decreases with silence");
        prev = phi;
    }
    // The deadline is where phi crosses the threshold: 100 + 5.61 * 10 ms.
    let d = regular.deadline();
    assert!((regular.timeout().as_secs_f64() * 1000.0 - 156.1).abs() < 0.5);
    assert!(regular.phi(d - Duration::from_millis(1)) < 8.0);
    assert!(regular.phi(d + Duration::from_millis(1)) > 8.0);
    assert!(!regular.is_silent(d - Duration::from_millis(1)) && regular.is_silent(d));
    // A lower threshold suspects sooner; a jittery history later.
    assert!(strict.timeout() < regular.timeout());
    assert!(jittery.timeout() > regular.timeout() + Duration::from_millis(50));

    // Through the detector: a stop is detected, later than the deadline by at most one
    // heartbeat of another peer.
    let peers = ["p", "q"];
    let mut r = Run::new(est(8.0), &["a"], &peers);
    r.rounds(0.0, 12_000.0, &peers, &["a"], |p, _, t| {
        p != "p" || t <= 10_000.0
    });
    let log = r.take();
    assert_eq!(events(&log), vec![process("p")], "{log:?}");
    assert_eq!(
        log[0].0, 10_207.0,
        "q's heartbeat after p's 10.156 s deadline"
    );
}

#[test]
fn a_fixed_timeout_suspects_exactly_after_it() {
    let peers = ["p", "q"];
    let mut r = Run::new(
        Estimator::Fixed {
            timeout: Duration::from_millis(300),
        },
        &["a"],
        &peers,
    );
    r.rounds(0.0, 5_000.0, &peers, &["a"], |p, _, t| {
        p != "p" || t <= 2_000.0
    });
    let log = r.take();
    assert_eq!(events(&log), vec![process("p")]);
    // Deadline 2.3 s; q's heartbeats come at x.x07 s.
    assert_eq!(log[0].0, 2_307.0);
}

// ---- classification ---------------------------------------------------------------------

#[test]
fn a_peer_silent_while_others_are_heard_is_a_suspected_process() {
    let peers = ["p", "q", "r"];
    let mut r = Run::adaptive(&["a"], &peers);
    r.rounds(0.0, 5_000.0, &peers, &["a"], |p, _, t| {
        p != "p" || t < 3_000.0
    });
    assert_eq!(events(&r.take()), vec![process("p")]);
    // Nothing more while p stays silent, however often the detector is polled.
    for _ in 0..10 {
        r.advance(5_000.0);
    }
    r.rounds(5_000.0, 6_000.0, &peers, &["a"], |p, _, _| p != "p");
    assert!(r.take().is_empty());
    r.rounds(6_000.0, 8_000.0, &peers, &["a"], all);
    assert_eq!(events(&r.take()), vec![recovered("p", None)]);
    let st = r.core.status(r.clock.now());
    assert!(st.peers.iter().all(|p| !p.process_suspected));
}

#[test]
fn no_peer_heard_on_a_network_is_a_local_network_failure_not_dead_peers() {
    // One network: everything falls silent at 3 s.
    let peers = ["p", "q", "r"];
    let mut r = Run::adaptive(&["a"], &peers);
    r.rounds(0.0, 6_000.0, &peers, &["a"], |_, _, t| t < 3_000.0);
    let log = r.take();
    assert_eq!(events(&log), vec![down("a")], "{log:?}");
    // Four intervals after the last heartbeat (r's at 2.914 s).
    assert_eq!(log[0].0, 3_314.0);
    r.rounds(6_000.0, 8_000.0, &peers, &["a"], all);
    assert_eq!(
        events(&r.take()),
        vec![up("a")],
        "no peer was suspected, none recovers"
    );

    // Two networks: b falls silent for everyone; nobody is suspected, on no network.
    let mut r = Run::adaptive(&["a", "b"], &peers);
    r.rounds(0.0, 6_000.0, &peers, &["a", "b"], |_, n, t| {
        n == "a" || t < 3_000.0
    });
    assert_eq!(events(&r.take()), vec![down("b")]);
    let st = r.core.status(r.clock.now());
    assert!(st.network("b").unwrap().down && !st.network("a").unwrap().down);
    assert!(st
        .peers
        .iter()
        .all(|p| !p.process_suspected && p.links.iter().all(|l| !l.path_suspected)));
    r.rounds(6_000.0, 8_000.0, &peers, &["a", "b"], all);
    assert_eq!(events(&r.take()), vec![up("b")]);
}

#[test]
fn a_peer_heard_on_one_network_and_silent_on_another_is_a_path_failure() {
    let peers = ["p", "q"];
    let nets = ["a", "b"];
    let mut r = Run::adaptive(&nets, &peers);
    r.rounds(0.0, 5_000.0, &peers, &nets, |p, n, t| {
        !(p == "p" && n == "b" && t >= 3_000.0)
    });
    let log = r.take();
    assert_eq!(events(&log), vec![path("p", "b")], "{log:?}");
    // p's last on b at 2.901 s, deadline 3.121 s; evidence on b from q at 3.108 s is too
    // early, from q at 3.208 s (and p itself on a at 3.200 s) is enough.
    assert_eq!(log[0].0, 3_208.0);
    let st = r.core.status(r.clock.now());
    let p = st.peer("p").unwrap();
    assert!(!p.process_suspected && p.links[1].path_suspected && !p.links[0].path_suspected);
    r.rounds(5_000.0, 7_000.0, &peers, &nets, all);
    assert_eq!(events(&r.take()), vec![recovered("p", Some("b"))]);
}

#[test]
fn a_peer_silent_on_every_network_is_a_suspected_process() {
    let peers = ["p", "q"];
    let nets = ["a", "b"];
    let mut r = Run::adaptive(&nets, &peers);
    r.rounds(0.0, 5_000.0, &peers, &nets, |p, _, t| {
        p != "p" || t < 3_000.0
    });
    let log = r.take();
    assert_eq!(events(&log), vec![process("p")], "no path event: {log:?}");
    // p comes back: the copy on b arrives 1 ms after the one on a, which must not flash a
    // path suspicion on b.
    r.rounds(5_000.0, 7_000.0, &peers, &nets, all);
    assert_eq!(events(&r.take()), vec![recovered("p", None)]);

    // Coming back on a only: the process recovers, and b's path is suspected once p has
    // been heard on a for b's timeout (220 ms), not at once.
    let mut r = Run::adaptive(&nets, &peers);
    r.rounds(0.0, 5_000.0, &peers, &nets, |p, _, t| {
        p != "p" || t < 3_000.0
    });
    assert_eq!(events(&r.take()), vec![process("p")]);
    r.rounds(5_000.0, 7_000.0, &peers, &nets, |p, n, _| {
        p != "p" || n == "a"
    });
    let log = r.take();
    assert_eq!(
        events(&log),
        vec![recovered("p", None), path("p", "b")],
        "{log:?}"
    );
    assert_eq!(log[0].0, 5_000.0);
    assert_eq!(
        log[1].0, 5_300.0,
        "p on a at 5.3 s, q on b at 5.207 s: {log:?}"
    );
}

#[test]
fn a_path_suspicion_outlives_a_process_suspicion() {
    let peers = ["p", "q"];
    let nets = ["a", "b"];
    let mut r = Run::adaptive(&nets, &peers);
    // b's path to p breaks at 2 s, p dies at 4 s.
    r.rounds(0.0, 6_000.0, &peers, &nets, |p, n, t| {
        p != "p" || (n == "a" && t < 4_000.0) || t < 2_000.0
    });
    assert_eq!(events(&r.take()), vec![path("p", "b"), process("p")]);
    // p comes back on a only: its process recovers, b's path stays suspected (no event).
    r.rounds(6_000.0, 8_000.0, &peers, &nets, |p, n, _| {
        p != "p" || n == "a"
    });
    assert_eq!(events(&r.take()), vec![recovered("p", None)]);
    // b's path is repaired.
    r.rounds(8_000.0, 9_000.0, &peers, &nets, all);
    assert_eq!(events(&r.take()), vec![recovered("p", Some("b"))]);
}

#[test]
fn with_a_single_peer_its_silence_is_a_network_failure() {
    // Documented limitation: nobody to compare with.
    let mut r = Run::adaptive(&["a", "b"], &["p"]);
    r.rounds(0.0, 4_000.0, &["p"], &["a", "b"], |_, _, t| t < 2_000.0);
    assert_eq!(events(&r.take()), vec![down("a"), down("b")]);
}

#[test]
fn a_network_failure_during_a_process_failure_stays_two_facts() {
    // p dies at 2 s; network b fails locally at 4 s; b comes back at 6 s, p at 8 s.
    let peers = ["p", "q", "r"];
    let nets = ["a", "b"];
    let mut r = Run::adaptive(&nets, &peers);
    r.rounds(0.0, 10_000.0, &peers, &nets, |p, n, t| {
        (p != "p" || !(2_000.0..8_000.0).contains(&t))
            && (n != "b" || !(4_000.0..6_000.0).contains(&t))
    });
    assert_eq!(
        events(&r.take()),
        vec![process("p"), down("b"), up("b"), recovered("p", None)]
    );
}

/// Random schedules of stops, path failures and network failures with jittered arrivals.
fn random_trace(seed: u64) -> (Vec<(f64, usize, usize)>, f64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (np, nn) = (3, 2);
    let end = 30_000.0;
    // Per (peer or network) dead intervals.
    let mut dead = |n: usize| -> Vec<(f64, f64)> {
        (0..n)
            .map(|_| {
                if rng.bool() {
                    let s = rng.f64() * end;
                    (s, s + rng.f64() * 5_000.0)
                } else {
                    (f64::MAX, f64::MAX)
                }
            })
            .collect()
    };
    let peer_dead = dead(np);
    let net_dead = dead(nn);
    let path_dead = dead(np * nn);
    let mut arrivals = Vec::new();
    for p in 0..np {
        let phase = rng.f64() * 100.0;
        let mut t = phase;
        while t < end {
            for n in 0..nn {
                let a = t + rng.f64() * 40.0;
                let within = |d: (f64, f64)| d.0 <= t && t < d.1;
                if !within(peer_dead[p])
                    && !within(net_dead[n])
                    && !within(path_dead[p * nn + n])
                    && rng.f64() > 0.02
                {
                    arrivals.push((a, p, n));
                }
            }
            t += 100.0;
        }
    }
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    (arrivals, end)
}

fn replay(
    arrivals: &[(f64, usize, usize)],
    end: f64,
    poll_every: Option<f64>,
) -> Vec<(f64, Event)> {
    let names = ["p", "q", "r"];
    let nets = ["a", "b"];
    let mut r = Run::adaptive(&nets, &names);
    for &(t, p, n) in arrivals {
        if let Some(step) = poll_every {
            let mut x = (r.ms(r.clock.now()) / step).floor() * step + step;
            while x < t {
                let i = r.clock.start() + Duration::from_secs_f64(x / 1000.0);
                r.clock.set(i - r.clock.start());
                let evs = r.core.poll(i);
                r.log.extend(evs.into_iter().map(|e| (x, e)));
                x += step;
            }
            let i = r.clock.start() + Duration::from_secs_f64(t / 1000.0);
            r.clock.set(i - r.clock.start());
            let evs = r.core.on_heartbeat(names[p], nets[n], i);
            r.log.extend(evs.into_iter().map(|e| (t, e)));
        } else {
            r.hb(t, names[p], nets[n]);
        }
    }
    r.advance(end);
    r.take()
}

#[test]
fn next_wakeup_never_misses_a_change_and_events_form_a_consistent_history() {
    use std::collections::HashSet;
    for seed in 0..40 {
        let (arrivals, end) = random_trace(seed);
        let exact = replay(&arrivals, end, None);
        let sampled = replay(&arrivals, end, Some(1.0));
        assert_eq!(
            events(&exact),
            events(&sampled),
            "seed {seed}: polling every millisecond sees the same changes"
        );
        for ((a, _), (b, _)) in exact.iter().zip(&sampled) {
            assert!(*a <= *b && *b - *a <= 1.0 + 1e-6, "seed {seed}: {a} vs {b}");
        }
        // Every event changes the state it names: nothing is reported twice.
        let mut state: HashSet<(String, Option<String>, &str)> = HashSet::new();
        for (t, e) in &exact {
            let (key, on) = match e {
                Event::PeerSuspected { peer, network, .. } => {
                    ((peer.clone(), network.clone(), "peer"), true)
                }
                Event::PeerRecovered { peer, network } => {
                    ((peer.clone(), network.clone(), "peer"), false)
                }
                Event::NetworkDown { network } => ((network.clone(), None, "net"), true),
                Event::NetworkUp { network } => ((network.clone(), None, "net"), false),
                other => panic!("unexpected {other:?}"),
            };
            let changed = if on {
                state.insert(key)
            } else {
                state.remove(&key)
            };
            assert!(changed, "seed {seed}: {e:?} at {t} repeats the state");
        }
    }
}

// ---- configuration ----------------------------------------------------------------------

fn invalid(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let now = Instant::now();
    let core = |cfg: DetectorConfig, nets: &[&str], peers: &[&str]| {
        DetectorCore::new(
            cfg,
            nets.iter().map(|s| s.to_string()).collect(),
            peers.iter().map(|s| s.to_string()).collect(),
            now,
        )
    };
    let ok = DetectorConfig::new(INTERVAL);
    assert!(core(ok.clone(), &["a"], &["p"]).is_ok());
    assert!(invalid(core(ok.clone(), &["a"], &[])).contains("no peer names"));
    assert!(invalid(core(ok.clone(), &[], &["p"])).contains("no network names"));
    assert!(invalid(core(ok.clone(), &["a"], &["p", ""])).contains("empty"));
    assert!(invalid(core(ok.clone(), &["a"], &["p", "p"])).contains("duplicate peer name \"p\""));
    assert!(invalid(core(ok.clone(), &["a", "a"], &["p"])).contains("duplicate network"));
    assert!(invalid(core(ok.clone(), &["a"], &["x\0y"])).contains("control character"));
    let long = "x".repeat(300);
    assert!(invalid(core(ok.clone(), &["a"], &[long.as_str()])).contains("limit is 255"));
    for bad in [Duration::ZERO, Duration::from_secs(3600)] {
        assert!(invalid(core(DetectorConfig::new(bad), &["a"], &["p"])).contains("interval"));
    }
    let cfg = ok.clone().network_failure_limit(Duration::from_millis(10));
    assert!(invalid(core(cfg, &["a"], &["p"])).contains("network failure limit"));
    let cfg = ok.clone().estimator(Estimator::Fixed {
        timeout: Duration::from_millis(50),
    });
    assert!(invalid(core(cfg, &["a"], &["p"])).contains("shorter than the heartbeat interval"));
    let cfg = ok.clone().estimator(Estimator::PhiAccrual(PhiConfig {
        threshold: f64::NAN,
        ..PhiConfig::default()
    }));
    assert!(invalid(core(cfg, &["a"], &["p"])).contains("phi threshold"));
    let cfg = ok.clone().estimator(Estimator::Adaptive(AdaptiveConfig {
        window: 1,
        ..AdaptiveConfig::default()
    }));
    assert!(invalid(core(cfg, &["a"], &["p"])).contains("window"));
    let cfg = ok.estimator(Estimator::Adaptive(AdaptiveConfig {
        ceiling_factor: 1.0,
        ..AdaptiveConfig::default()
    }));
    assert!(invalid(core(cfg, &["a"], &["p"])).contains("ceiling"));

    // The runtime.
    let udp = |bind: &str, peer: &str| {
        Detector::start(UdpConfig::new("me", INTERVAL).network("a", bind, [("p", peer)]))
    };
    assert!(invalid(udp("127.0.0.1:notaport", "127.0.0.1:9")).contains("bind address"));
    assert!(invalid(udp("127.0.0.1:0", "nonsense")).contains("address of peer \"p\""));
    assert!(
        invalid(Detector::start(UdpConfig::new("", INTERVAL).network(
            "a",
            "127.0.0.1:0",
            [("p", "127.0.0.1:9")]
        )))
        .contains("process name is empty")
    );
    assert!(invalid(Detector::start(
        UdpConfig::new("me", Duration::ZERO).network("a", "127.0.0.1:0", [("p", "127.0.0.1:9")])
    ))
    .contains("interval"));
    // A socket that cannot be bound is an I/O error.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    match udp(&taken.local_addr().unwrap().to_string(), "127.0.0.1:9") {
        Err(Error::Io(m)) => assert!(m.contains("cannot bind network \"a\""), "{m}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// ---- UDP runtime ------------------------------------------------------------------------

fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

type Log = Arc<Mutex<Vec<(Instant, Event)>>>;

fn record(d: &Detector) -> (tenure::Subscription, Log) {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let sub = d.subscribe(move |e| l2.lock().push((Instant::now(), e)));
    (sub, log)
}

#[test]
fn udp_detectors_on_loopback_report_a_path_failure_and_a_stopped_peer() {
    let names = ["a", "b", "c"];
    let ports = free_ports(6);
    let addr = |i: usize, net: usize| format!("127.0.0.1:{}", ports[i * 2 + net]);
    let start = |i: usize| {
        let mut cfg = UdpConfig::new(names[i], INTERVAL);
        for (net, nname) in ["n1", "n2"].iter().enumerate() {
            let peers: Vec<(String, String)> = (0..3)
                .filter(|j| *j != i)
                .map(|j| (names[j].to_string(), addr(j, net)))
                .collect();
            cfg = cfg.network(*nname, addr(i, net), peers);
        }
        Detector::start(cfg).expect("detector starts")
    };
    let a = start(0);
    let b = start(1);
    let c = start(2);
    assert_eq!(a.local_addr("n2").unwrap().to_string(), addr(0, 1));
    let (_sa, log_a) = record(&a);
    let (_sb, log_b) = record(&b);
    let every_link_heard = |d: &Detector| {
        d.status()
            .peers
            .iter()
            .all(|p| p.links.iter().all(|l| l.heartbeats >= 5))
    };
    wait_for("heartbeats on every link", Duration::from_secs(10), || {
        every_link_heard(&a) && every_link_heard(&b) && every_link_heard(&c)
    });

    // c stops sending on n2: a and b suspect c's path on n2, not its process.
    let has = |log: &Log, e: &Event| log.lock().iter().any(|(_, x)| x == e);
    c.set_sending("n2", false).unwrap();
    assert!(c.set_sending("n3", false).is_err());
    wait_for("path suspicion of c on n2", Duration::from_secs(5), || {
        has(&log_a, &path("c", "n2")) && has(&log_b, &path("c", "n2"))
    });
    assert!(!has(&log_a, &process("c")));
    c.set_sending("n2", true).unwrap();
    wait_for("c's path on n2 recovers", Duration::from_secs(5), || {
        has(&log_a, &recovered("c", Some("n2"))) && has(&log_b, &recovered("c", Some("n2")))
    });

    // c stops altogether.
    let stopped = Instant::now();
    drop(c);
    wait_for("process suspicion of c", Duration::from_secs(5), || {
        has(&log_a, &process("c")) && has(&log_b, &process("c"))
    });
    for log in [&log_a, &log_b] {
        let at = log
            .lock()
            .iter()
            .find(|(_, e)| *e == process("c"))
            .map(|(t, _)| *t)
            .unwrap();
        assert!(
            at - stopped < Duration::from_secs(2),
            "detected after {:?}",
            at - stopped
        );
    }
    let st = a.status();
    assert!(st.peer("c").unwrap().process_suspected);
    assert!(a.counters().received > 0 && a.counters().sent > 0);
    a.stop();
    b.stop();
}

#[test]
fn udp_runtime_ignores_malformed_and_unknown_datagrams() {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let d = Detector::start(UdpConfig::new("me", INTERVAL).network(
        "n",
        "127.0.0.1:0",
        [("p", peer.local_addr().unwrap().to_string())],
    ))
    .unwrap();
    let to = d.local_addr("n").unwrap();
    let send = |b: &[u8]| {
        peer.send_to(b, to).unwrap();
    };
    send(b"hello");
    send(&[0u8; 2000]);
    send(&tenure::detector::wire::encode("stranger", 1, 1));
    send(&tenure::detector::wire::encode("me", 1, 1));
    let mut bad_version = tenure::detector::wire::encode("p", 1, 1);
    bad_version[4] = 9;
    send(&bad_version);
    send(&tenure::detector::wire::encode("p", 1, 5));
    send(&tenure::detector::wire::encode("p", 1, 4)); // late duplicate
    wait_for("datagrams processed", Duration::from_secs(5), || {
        let c = d.counters();
        c.received + c.rejected >= 7
    });
    let c = d.counters();
    assert_eq!((c.received, c.rejected), (1, 6), "{c:?}");
    assert_eq!(d.status().peer("p").unwrap().links[0].heartbeats, 1);
    // Our detector heartbeats to the peer's address.
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    let hb = tenure::detector::wire::decode(&buf[..n]).unwrap();
    assert_eq!(hb.sender, "me");
    d.stop();
}
