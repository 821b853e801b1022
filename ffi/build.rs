//! Gives the shared library the name it is installed under (see Cargo.toml, `[lib]`): the
//! soname `libtenure.so.<abi>`, where the ABI number is the major version, or `0.<minor>`
//! while the major is 0 (a 0.x minor release may break the ABI; a patch release may not).
//! `install-c.sh` installs the file as `libtenure.so.<version>` with that soname's link.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match os.as_str() {
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtenure.so.{abi}");
        }
        "macos" | "ios" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libtenure.{abi}.dylib");
        }
        _ => {}
    }
    println!("cargo:rerun-if-changed=build.rs");
}
