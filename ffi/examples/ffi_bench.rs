//! Benchmarks of the C API (numbers for BENCHMARKS.md):
//!
//! 1. the cost of a C getter over the Rust call it wraps: `Lock::fencing_token` against
//!    `tenure_lock_fencing_token`, `Lock::is_held` against `tenure_lock_is_held`, each C
//!    function called through a function pointer (so it is not inlined, as from C);
//! 2. event delivery latency from the core to a C callback: events are queued on a
//!    subscription the way the core's runtime queues them (`Sink::send`), and a C-ABI
//!    callback reads the send instant back through `tenure_event_fencing_token`; compared
//!    with a plain Rust callback on the same path.
//!
//! Run: `cargo run -p tenure-ffi --release --example ffi_bench [iterations]`. The C-side
//! numbers through the shared library come from `tests/c/bench.c`.

use std::ffi::c_void;
use std::hint::black_box;
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tenure::events::{Dispatcher, Handler};
use tenure::Event;
use tenure_ffi::client::*;
use tenure_ffi::event::*;
use tenure_ffi::lock::*;
use tenure_ffi::server::*;
use tenure_ffi::status::tenure_status;

fn ok(st: tenure_status, what: &str) {
    assert_eq!(st, tenure_status::Ok, "{what}");
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn ns_since_epoch() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn time_per_call(iters: u64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

struct Latencies {
    seen: Mutex<Vec<u64>>,
}

unsafe extern "C" fn c_call(user_data: *mut c_void, event: *const tenure_event) {
    let now = ns_since_epoch();
    let mut sent = 0u64;
    // SAFETY: called by tenure with a live event.
    let st = unsafe { tenure_event_fencing_token(event, &mut sent) };
    debug_assert_eq!(st, tenure_status::Ok);
    // SAFETY: user_data is the Latencies the benchmark passed, alive until drop.
    let l = unsafe { &*(user_data as *const Latencies) };
    l.seen.lock().unwrap().push(now.saturating_sub(sent));
}

unsafe extern "C" fn c_drop(user_data: *mut c_void) {
    // SAFETY: the Arc leaked into user_data below.
    drop(unsafe { Arc::from_raw(user_data as *const Latencies) });
}

fn deliver(label: &str, c_callback: bool, events: usize, spacing: Duration) {
    let lat = Arc::new(Latencies {
        seen: Mutex::new(Vec::with_capacity(events)),
    });
    let (sub, sink) = if c_callback {
        let cb = tenure_callback {
            call: Some(c_call),
            drop: Some(c_drop),
            user_data: Arc::into_raw(lat.clone()) as *mut c_void,
        };
        Dispatcher::new("bench").subscribe(Handler::dispatched(
            tenure_ffi::bench_adapter(cb).expect("a call"),
        ))
    } else {
        let l2 = lat.clone();
        Dispatcher::new("bench").subscribe(move |ev: Event| {
            let now = ns_since_epoch();
            if let Event::LockAcquired { token, .. } = ev {
                l2.seen.lock().unwrap().push(now.saturating_sub(token));
            }
        })
    };
    let start = Instant::now();
    for _ in 0..events {
        sink.send(Event::LockAcquired {
            name: "bench/lock".into(),
            token: ns_since_epoch(),
        });
        if !spacing.is_zero() {
            let until = Instant::now() + spacing;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while lat.seen.lock().unwrap().len() < events {
        assert!(Instant::now() < deadline, "events not delivered");
        std::thread::sleep(Duration::from_micros(100));
    }
    let elapsed = start.elapsed();
    drop(sub);
    let mut v = lat.seen.lock().unwrap().clone();
    v.sort_unstable();
    if spacing.is_zero() {
        println!(
            "{label:<40} {:>7.0} ns/event  ({:.2} M events/s, {events} events)",
            elapsed.as_nanos() as f64 / events as f64,
            events as f64 / elapsed.as_secs_f64() / 1e6,
        );
    } else {
        println!(
            "{label:<40} p50 {:>6.1} us  p99 {:>7.1} us  max {:>8.1} us  ({events} events)",
            percentile(&v, 0.50) as f64 / 1e3,
            percentile(&v, 0.99) as f64 / 1e3,
            *v.last().unwrap() as f64 / 1e3,
        );
    }
}

/// The floor of any delivery to another thread: a bare channel and a thread blocked on it,
/// no tenure code, measured the same way as [`deliver`].
fn floor(label: &str, events: usize, spacing: Duration) {
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let t = std::thread::spawn(move || {
        let mut seen = Vec::with_capacity(events);
        while let Ok(sent) = rx.recv() {
            seen.push(ns_since_epoch().saturating_sub(sent));
        }
        seen
    });
    for _ in 0..events {
        tx.send(ns_since_epoch()).expect("receiver alive");
        let until = Instant::now() + spacing;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    drop(tx);
    let mut v = t.join().expect("receiver");
    v.sort_unstable();
    println!(
        "{label:<40} p50 {:>6.1} us  p99 {:>7.1} us  max {:>8.1} us  ({events} events)",
        percentile(&v, 0.50) as f64 / 1e3,
        percentile(&v, 0.99) as f64 / 1e3,
        *v.last().unwrap() as f64 / 1e3,
    );
}

fn main() {
    let iters: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    epoch();

    // A server and two locks: one taken in Rust, one through the C API.
    let mut sb = ptr::null_mut();
    let mut server = ptr::null_mut();
    let mut addr = [0 as std::ffi::c_char; 64];
    let mut n = 0usize;
    // SAFETY: valid pointers to locals; strings are NUL-terminated literals.
    unsafe {
        ok(tenure_server_builder_new(&mut sb), "builder");
        ok(
            tenure_server_builder_set_listen(sb, b"127.0.0.1:0\0".as_ptr().cast()),
            "listen",
        );
        ok(tenure_server_builder_set_durability(sb, 1), "durability");
        ok(tenure_server_start(sb, &mut server), "start");
        ok(
            tenure_server_address(server, addr.as_mut_ptr(), addr.len(), &mut n),
            "address",
        );
    }
    // SAFETY: written NUL-terminated by tenure_server_address.
    let addr_s = unsafe { std::ffi::CStr::from_ptr(addr.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string();
    let rust_client =
        tenure::Client::connect(tenure::ClientConfig::new([addr_s.clone()])).expect("rust client");
    let rust_lock = rust_client
        .lock("bench/rust", Duration::from_secs(5))
        .expect("rust lock");
    let mut cb = ptr::null_mut();
    let mut client = ptr::null_mut();
    let mut lock = ptr::null_mut();
    let none = || tenure_callback {
        call: None,
        drop: None,
        user_data: ptr::null_mut(),
    };
    // SAFETY: as above.
    unsafe {
        ok(tenure_client_builder_new(&mut cb), "client builder");
        ok(
            tenure_client_builder_add_endpoint(cb, addr.as_ptr()),
            "endpoint",
        );
        ok(tenure_client_connect(cb, &mut client), "connect");
        ok(
            tenure_client_lock(
                client,
                b"bench/c\0".as_ptr().cast(),
                5000,
                none(),
                &mut lock,
            ),
            "lock",
        );
    }

    // Called through pointers the optimiser cannot see through, as a C caller would.
    let token_fn: extern "C" fn(*const tenure_lock) -> u64 = black_box(tenure_lock_fencing_token);
    let held_fn: extern "C" fn(*const tenure_lock) -> bool = black_box(tenure_lock_is_held);
    println!("getter cost ({iters} calls each, best of 3 rounds):");
    let mut best = [f64::MAX; 4];
    for _ in 0..3 {
        let r = [
            time_per_call(iters, || {
                black_box(black_box(&rust_lock).fencing_token());
            }),
            time_per_call(iters, || {
                black_box(token_fn(black_box(lock)));
            }),
            time_per_call(iters / 10, || {
                black_box(black_box(&rust_lock).is_held());
            }),
            time_per_call(iters / 10, || {
                black_box(held_fn(black_box(lock)));
            }),
        ];
        for (b, x) in best.iter_mut().zip(r) {
            *b = b.min(x);
        }
    }
    println!(
        "  Lock::fencing_token (Rust)      {:>6.2} ns   tenure_lock_fencing_token (C ABI) {:>6.2} ns   overhead {:>5.2} ns",
        best[0],
        best[1],
        best[1] - best[0]
    );
    println!(
        "  Lock::is_held (Rust)            {:>6.2} ns   tenure_lock_is_held (C ABI)       {:>6.2} ns   overhead {:>5.2} ns",
        best[2],
        best[3],
        best[3] - best[2]
    );

    println!("event delivery latency, core queue to callback:");
    let spaced = Duration::from_micros(200);
    deliver(
        "Rust callback, one event every 200 us",
        false,
        20_000,
        spaced,
    );
    deliver("C callback, one event every 200 us", true, 20_000, spaced);
    floor("floor: bare channel to a blocked thread", 20_000, spaced);
    println!("event delivery throughput, events queued back to back:");
    deliver("Rust callback", false, 50_000, Duration::ZERO);
    deliver(
        "C callback (conversion + call)",
        true,
        50_000,
        Duration::ZERO,
    );

    drop(rust_lock);
    rust_client.close();
    // SAFETY: handles from above, freed once.
    unsafe {
        tenure_lock_free(lock);
        tenure_client_free(client);
        tenure_server_free(server);
    }
}
