//! The committed header is what cbindgen makes of the sources, and its version macros agree
//! with Cargo.toml and with the library.

use std::ffi::CStr;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    root().join("..").join("include").join("tenure.h")
}

fn generate() -> String {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root().join("src").join("lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn committed_header_is_what_cbindgen_makes() {
    let fresh = generate();
    let path = header_path();
    if std::env::var_os("TENURE_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/tenure.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "include/tenure.h is out of date (first difference at line {}); regenerate it with \
             `TENURE_BLESS=1 cargo test -p tenure-ffi --test header` and commit it",
            line + 1
        );
    }
}

fn define(header: &str, name: &str) -> String {
    let prefix = format!("#define {name} ");
    header
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} is not defined in the header"))
        .trim()
        .to_string()
}

#[test]
fn version_macros_match_cargo_toml_and_the_library() {
    // The generated text: equal to the committed header (test above), and free of races with
    // a concurrent TENURE_BLESS run.
    let header = generate();
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    let patch: u32 = env!("CARGO_PKG_VERSION_PATCH").parse().unwrap();
    assert_eq!(define(&header, "TENURE_VERSION_MAJOR"), major.to_string());
    assert_eq!(define(&header, "TENURE_VERSION_MINOR"), minor.to_string());
    assert_eq!(define(&header, "TENURE_VERSION_PATCH"), patch.to_string());
    assert_eq!(
        define(&header, "TENURE_VERSION_STRING"),
        format!("\"{}\"", env!("CARGO_PKG_VERSION"))
    );
    let packed = (major << 16) | (minor << 8) | patch;
    assert_eq!(tenure_ffi::tenure_version_number(), packed);
    // SAFETY: tenure_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(tenure_ffi::tenure_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    // The packing macro is the one documented for tenure_version_number.
    assert!(define(&header, "TENURE_VERSION")
        .starts_with("((TENURE_VERSION_MAJOR << 16) | (TENURE_VERSION_MINOR << 8)"));
}

#[test]
fn every_exported_function_is_in_the_header() {
    let header = generate();
    let mut missing = vec![];
    for entry in std::fs::read_dir(root().join("src")).unwrap() {
        let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut lines = src.lines();
        while let Some(l) = lines.next() {
            if l.trim() == "#[no_mangle]" {
                let sig = lines.next().unwrap_or_default();
                let name = sig
                    .split("fn ")
                    .nth(1)
                    .and_then(|s| s.split('(').next())
                    .unwrap_or_default();
                if !name.starts_with("tenure_") {
                    missing.push(format!("{name} (no tenure_ prefix)"));
                } else if !header.contains(&format!("{name}(")) {
                    missing.push(name.to_string());
                }
            }
        }
    }
    assert!(missing.is_empty(), "not in the header: {missing:?}");
}
