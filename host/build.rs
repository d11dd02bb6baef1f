//! Builds the driver components in this repository for `wasm32-wasip2` and embeds the built-in
//! ones, so that `ferry` is one self-contained binary. The test and example drivers are built in
//! the same cargo run; tests find them through `FERRY_GUEST_DIR`.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, embedded as a built-in driver)
const GUESTS: &[(&str, bool)] = &[
    ("ferry-driver-oci", true),
    ("ferry-driver-vm-disk", true),
    ("ferry-driver-tarball", true),
    ("ferry-driver-wasm", true),
    ("example-file-driver", false),
    ("example-helm-driver", false),
    ("ferry-driver-hostile", false),
    ("ferry-driver-sleeps-in-info", false),
    ("ferry-driver-lies-in-info", false),
    ("not-a-driver", false),
    ("ferry-driver-wants-sockets", false),
    ("example-wasi-installer", false),
    ("ferry-installer-hostile", false),
    ("ferry-installer-probe", false),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_owned();
    for watched in ["wit", "plugins", "examples", "tests/drivers", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // A separate target directory: the outer cargo holds the lock on the usual one.
    let target_dir = root.join("target/guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    for (package, _) in GUESTS {
        command.args(["-p", package]);
    }
    // Settings meant for the host build must not leak into the guest build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key.starts_with("RUSTC") || key == "RUSTFLAGS" {
            command.env_remove(key.as_ref());
        }
    }
    let status = command.status().expect("running cargo to build the driver components");
    if !status.success() {
        panic!(
            "building the driver components failed; is the wasm32-wasip2 target installed? \
             (rustup target add wasm32-wasip2)"
        );
    }
    let out_dir = target_dir.join("wasm32-wasip2/guest");
    println!("cargo:rustc-env=FERRY_GUEST_DIR={}", out_dir.display());

    let mut builtin = String::from("const BUILTIN: &[Builtin] = &[\n");
    for (package, _) in GUESTS.iter().filter(|(_, embedded)| *embedded) {
        let file = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        builtin.push_str(&format!(
            "    Builtin {{ name: {package:?}, bytes: include_bytes!({:?}), sha256: {:?} }},\n",
            file.display().to_string(),
            hex(&Sha256::digest(&bytes)),
        ));
    }
    builtin.push_str("];\n");
    let out = Path::new(&std::env::var_os("OUT_DIR").unwrap()).join("builtin_drivers.rs");
    std::fs::write(out, builtin).unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
