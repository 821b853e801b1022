//! Gives the shared library the name it is installed under (see Cargo.toml, `[lib]`).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match os.as_str() {
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtenure.so");
        }
        "macos" | "ios" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libtenure.dylib");
        }
        _ => {}
    }
    println!("cargo:rerun-if-changed=build.rs");
}
