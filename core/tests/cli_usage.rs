//! The command line as a new user meets it: `--help` on every command, `--version`, and a
//! table of bad values, each with the message it must give and the sysexits status (64 usage,
//! 69 unavailable). Real processes; every run has a time limit.

mod common;
use common::tmpdir;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tenure");

/// Runs `tenure args...` in `dir` with no TENURE_ENDPOINTS, killed after 20 s.
fn run_in(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut c = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TENURE_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tenure runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("tenure {args:?} still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    c.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    run_in(&std::env::temp_dir(), args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_command_has_help_and_the_command_has_a_version() {
    for cmd in [
        "serve",
        "lock",
        "status",
        "revoke",
        "member",
        "elect",
        "demo",
        "completions",
    ] {
        for flag in ["--help", "-h"] {
            let o = run(&[cmd, flag]);
            let out = text(&o.stdout);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{cmd} {flag}: {}",
                text(&o.stderr)
            );
            assert!(
                out.contains(&format!("Usage: tenure {cmd}")),
                "{cmd} {flag}: {out}"
            );
        }
    }
    for sub in ["add", "remove", "replace"] {
        let o = run(&["member", sub, "--help"]);
        assert_eq!(o.status.code(), Some(0));
        assert!(text(&o.stdout).contains(&format!("Usage: tenure member {sub}")));
    }
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    for cmd in [
        "serve", "lock", "status", "revoke", "member", "elect", "demo",
    ] {
        assert!(out.contains(cmd), "{cmd} listed: {out}");
    }
    assert!(
        !out.contains("__demo-holder"),
        "the demo's helper is hidden"
    );
    let o = run(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        text(&o.stdout).trim(),
        format!("tenure {}", env!("CARGO_PKG_VERSION"))
    );
    // No command: the help, on stderr, as a usage error.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(text(&o.stderr).contains("Usage: tenure <COMMAND>"));
    // Completions for a shell.
    let o = run(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("_tenure()"));
}

#[test]
fn bad_values_are_named_after_their_flag_and_exit_64() {
    // (arguments, what stderr must contain)
    let table: &[(&[&str], &str)] = &[
        (
            &["lock", "--ttl", "0", "x", "--", "true"],
            "invalid value '0' for '--ttl <SECS>': must be 0.05 to 86400 seconds",
        ),
        (
            &["lock", "--ttl", "-1", "x", "--", "true"],
            "invalid value '-1' for '--ttl <SECS>': must be 0.05 to 86400 seconds",
        ),
        (
            &["lock", "--ttl", "ten", "x", "--", "true"],
            "invalid value 'ten' for '--ttl <SECS>': not a number of seconds",
        ),
        (
            &["lock", "--timeout", "-1", "x", "--", "true"],
            "invalid value '-1' for '--timeout <SECS>': must be 0 to 31536000 seconds",
        ),
        (
            &["lock", "--timeout", "NaN", "x", "--", "true"],
            "invalid value 'NaN' for '--timeout <SECS>'",
        ),
        (
            &["lock", "--grace", "1e99", "x", "--", "true"],
            "invalid value '1e99' for '--grace <SECS>'",
        ),
        (&["lock", "", "--", "true"], "invalid value '' for '<NAME>'"),
        (&["lock", "x"], "<CMD>"),
        (
            &["lock", "--bogus", "x", "--", "true"],
            "unexpected argument '--bogus'",
        ),
        (
            &["serve", "--durability", "sometimes"],
            "invalid value 'sometimes' for '--durability <MODE>'",
        ),
        (
            &["serve", "--max-connections", "0"],
            "invalid value '0' for '--max-connections <N>': must be a whole number, 1 or more",
        ),
        (
            &["serve", "--idle-timeout", "0"],
            "invalid value '0' for '--idle-timeout <SECS>': must be more than 0 seconds",
        ),
        (
            &["serve", "--id", "0", "--cluster", "1=a"],
            "invalid value '0' for '--id <N>'",
        ),
        (
            &["serve", "--id", "1", "--cluster", "1"],
            "invalid value '1' for '--cluster <ID=ADDR,...>'",
        ),
        (&["serve", "--bootstrap"], "--cluster"),
        (
            &["serve", "--listen", "garbage"],
            "listen address \"garbage\"",
        ),
        (&["status", "--endpoints", ","], "an endpoint is empty"),
        (&["revoke"], "<NAME>"),
        (&["member", "add", "3"], "\"3\" is not ID=ADDR"),
        (
            &["member", "remove", "x"],
            "member id \"x\" is not a positive integer",
        ),
        (&["member", "frob"], "unrecognized subcommand 'frob'"),
        (&["elect", "x", "--", "true"], "--id <ID>"),
        (
            &["elect", "--observe", "--id", "a", "x"],
            "cannot be used with",
        ),
        (
            &[
                "elect",
                "--id",
                "a",
                "--priority",
                "high",
                "x",
                "--",
                "true",
            ],
            "invalid value 'high' for '--priority <P>'",
        ),
        (&["completions", "tcsh"], "invalid value 'tcsh'"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    ];
    let dir = tmpdir("cli-usage");
    std::fs::create_dir_all(&dir).unwrap();
    for (args, want) in table {
        let o = run_in(&dir, args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains(want),
            "{args:?} should say {want:?}, said: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    // No bad value created a data directory.
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_address_in_use_exits_69_and_creates_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tmpdir("cli-in-use");
    std::fs::create_dir_all(&dir).unwrap();
    let o = run_in(&dir, &["serve", "--listen", &addr, "--data", "d"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(69), "{err}");
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
    assert!(!dir.join("d").exists(), "no data directory before the bind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_peer_that_speaks_another_protocol_is_not_a_tenure_server() {
    // An HTTP server: answers anything with a 400.
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = http.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in http.incoming().flatten() {
            let mut c = c;
            let mut buf = [0u8; 512];
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let o = run(&["status", "--endpoints", &addr]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(69), "{err}");
    assert!(
        err.contains(&format!("{addr} is not a tenure server")),
        "{err}"
    );
}
