//! What the container executor's probe (`RUN` in tests/common/site.rs) does, as a WASI
//! installer: it reports what it was given as outputs, in the same form, and fails when asked
//! to, so one table of runtime-contract tests runs against both executors.

use sha2::Digest;
use std::path::Path;

const OUT: &str = "/cnab/app/outputs";

fn main() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    println!("run tool: {} of {}", var("CNAB_ACTION"), var("CNAB_INSTALLATION_NAME"));
    let wait: u64 = var("WAIT").parse().unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_secs(wait));
    let env =
        ["CNAB_ACTION", "CNAB_INSTALLATION_NAME", "CNAB_BUNDLE_NAME", "CNAB_BUNDLE_VERSION", "CNAB_CLAIMS_VERSION"]
            .map(var)
            .join("|");
    put("env", &env);
    put("revision", &var("CNAB_REVISION"));
    put("port", &var("PORT"));
    put("greeting", &read("/cnab/app/greeting"));
    put("token", &read("/cnab/app/token"));
    let bundle = std::fs::read("/cnab/bundle.json").expect("/cnab/bundle.json");
    let sha: String = sha2::Sha256::digest(&bundle).iter().map(|b| format!("{b:02x}")).collect();
    put("bundle", &format!("{sha}\n"));
    if read("/cnab/claim.json").contains("\"id\"") {
        put("claim", "yes");
    }
    match std::fs::read_to_string("/cnab/app/relocation-mapping.json") {
        Ok(mapping) => put("mapping", &mapping),
        Err(_) => put("mapping", "none"),
    }
    let artifacts = Path::new("/cnab/app/artifacts");
    if artifacts.is_dir() {
        let mut files = Vec::new();
        walk(artifacts, ".", &mut files);
        files.sort();
        files.truncate(50);
        put("artifacts", &files.iter().map(|f| format!("{f}\n")).collect::<String>());
    } else {
        put("artifacts", "none");
    }
    if var("FAIL") == "yes" {
        eprintln!("failing as asked");
        std::process::exit(3);
    }
}

/// `find . -type f` from `dir`.
fn walk(dir: &Path, shown: &str, files: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("listing artifacts").flatten() {
        let name = format!("{shown}/{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().expect("an entry's type");
        if kind.is_dir() {
            walk(&entry.path(), &name, files);
        } else if kind.is_file() {
            files.push(name);
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn put(name: &str, value: &str) {
    std::fs::write(format!("{OUT}/{name}"), value).unwrap_or_else(|e| panic!("{OUT}/{name}: {e}"));
}
