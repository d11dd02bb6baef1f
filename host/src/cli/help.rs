//! What `--help`, shell completion and man pages say beyond each flag's own line: the headings
//! global flags are grouped under, each command's examples, and the generators that turn the one
//! clap definition into completion scripts and man pages.

use anyhow::{Context, Result};
use std::path::Path;

/// Headings of the global flags, so that a command's own options stand apart from them.
pub const GLOBAL: &str = "Global options";
pub const DRIVER_LIMITS: &str = "Driver limits";
pub const REGISTRY: &str = "Registry options";
pub const BUNDLE_DRIVERS: &str = "Bundle drivers";
pub const INSTALLER_SANDBOX: &str = "WASI installers (invocation images of imageType wasm)";

pub const VALIDATE: &str = "\
Examples:
  ferry validate bundle.json
  ferry validate bundle.json --strict        # warnings (a misspelt field, an image no driver handles) fail too
  ferry validate app.tgz --format json -o report.json";

pub const EXPORT: &str = "\
Examples:
  ferry export bundle.json -o app.tgz
  ferry --insecure-registry localhost:5000 export bundle.json -o app.tar.zst --compression-level 3 --force";

pub const INSPECT: &str = "\
Examples:
  ferry inspect app.tgz
  ferry inspect app.tgz --details --format json
  ferry inspect registry.example:5000/shop:1.0       # a published bundle, read from its index";

pub const VERIFY: &str = "\
Examples:
  ferry verify app.tgz
  ferry verify app.tgz --format json -o verify.json";

pub const RELOCATE: &str = "\
Examples:
  ferry relocate app.tgz --to registry.site:5000/shop -o relocation-mapping.json
  ferry relocate app.tgz --to file:///srv/images -o relocation-mapping.json
  ferry relocate bundle.json --to registry.site:5000/shop --dry-run --format json
  ferry relocate registry.example:5000/shop:1.0 --to registry.site:5000/mirror -o relocation-mapping.json";

pub const PUSH: &str = "\
Examples:
  ferry push app.tgz registry.example:5000/shop:1.0
  ferry push bundle.json registry.example:5000/shop --format json

Every image goes into REPOSITORY by digest, then the drivers the bundle ships, bundle.json as
canonical JSON, and last the index under TAG (default latest), as cnab-to-oci publishes bundles.
See docs/registries.md.";

pub const PULL: &str = "\
Examples:
  ferry pull registry.example:5000/shop:1.0 -o shop.tgz
  ferry pull registry.example:5000/shop@sha256:... -o shop.tar --force

Reads bundles ferry, porter and cnab-to-oci publish. The thick bundle is what `ferry export`
writes: verify, inspect and relocate take it.";

pub const DRIVER_LIST: &str = "\
Examples:
  ferry driver list
  ferry driver list --format json";

pub const DRIVER_INSPECT: &str = "\
Examples:
  ferry driver inspect drivers/helm.wasm
  ferry driver inspect drivers/helm.wasm --format json -o helm.json";

pub const DRIVER_ADD: &str = "\
Examples:
  ferry driver add bundle.json drivers/helm.wasm
  ferry driver add --from-build bundle.json target/wasm32-wasip2/release/my_driver.wasm";

pub const COMPLETION: &str = "\
Examples:
  ferry completion bash > /etc/bash_completion.d/ferry
  ferry completion zsh > \"${fpath[1]}/_ferry\"
  ferry completion fish > ~/.config/fish/completions/ferry.fish";

pub const INSTALL: &str = "\
Examples:
  ferry install shop-prod app.tgz --param port=8080 --cred kubeconfig=file:~/.kube/config
  ferry install shop-prod bundle.json --relocation-mapping relocation-mapping.json --param-file prod.yaml";

pub const UPGRADE: &str = "\
Examples:
  ferry upgrade shop-prod --param replicas=3 --cred kubeconfig=file:~/.kube/config
  ferry upgrade shop-prod app-1.1.tgz --cred-file creds.yaml";

pub const UNINSTALL: &str = "\
Examples:
  ferry uninstall shop-prod --cred kubeconfig=file:~/.kube/config";

pub const INVOKE: &str = "\
Examples:
  ferry invoke shop-prod backup --cred kubeconfig=file:~/.kube/config";

pub const INSTALLATIONS_LIST: &str = "\
Examples:
  ferry installations list
  ferry installations list --all --format json";

pub const INSTALLATIONS_SHOW: &str = "\
Examples:
  ferry installations show shop-prod
  ferry installations show shop-prod --format json -o history.json";

pub const OUTPUTS: &str = "\
Examples:
  ferry outputs shop-prod
  ferry outputs shop-prod admin-password";

/// Writes ferry's completion script for `shell` to stdout.
pub fn completion(mut command: clap::Command, shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut command, "ferry", &mut std::io::stdout());
}

/// Writes `ferry.1` and a page per subcommand (`ferry-export.1`, `ferry-driver-add.1`, ...)
/// into `dir`, which must exist.
pub fn man_pages(command: clap::Command, dir: &Path) -> Result<()> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    clap_mangen::generate_to(command, dir).with_context(|| format!("writing man pages into {}", dir.display()))
}
