//! `ferry install`, `upgrade`, `invoke`, `uninstall`, with each of ferry's executors: a real
//! container engine (podman's Docker-compatible service, started by each test on its own socket,
//! running an image built from Debian's static busybox and a `/cnab/app/run` script pushed into a
//! real registry), and ferry's own WASI sandbox with no engine (the same probe as a component,
//! tests/installers/probe). What the run tool saw comes back as outputs; the runtime-contract
//! tests are one table, run once per executor (`on_both_executors!`).

mod common;

use common::site::{Site, ok};
use common::{TestRegistry, ferry_command, text};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// Each test `fn NAME(site: Site)` becomes `container::NAME` and `wasi::NAME`.
macro_rules! on_both_executors {
    ($($name:ident),* $(,)?) => {
        mod container {
            $(#[test] fn $name() { super::$name(super::Site::new()) })*
        }
        mod wasi {
            $(#[test] fn $name() { super::$name(super::Site::wasi()) })*
        }
    };
}

on_both_executors!(
    an_installation_lives_through_install_upgrade_custom_actions_and_uninstall,
    a_failing_run_is_recorded_as_failed_with_its_exit_status,
    a_thick_bundle_installs_at_a_site_with_no_registry,
    a_relocated_bundle_runs_its_invocation_image_from_the_relocated_reference,
    one_action_at_a_time_and_an_interrupted_or_lost_action_is_recorded,
    what_the_engine_or_the_run_tool_gets_wrong_is_named,
);

fn an_installation_lives_through_install_upgrade_custom_actions_and_uninstall(site: Site) {
    let bundle = site.bundle.to_str().unwrap();
    let out =
        site.ferry(&["install", "prod", bundle, "--param", "greeting=hello", "--cred", "token=env:FERRY_TEST_TOKEN"]);
    ok(&out);
    assert!(text(&out.stdout).contains("run tool: install of prod"), "the run tool's output streams to the operator");
    assert!(!text(&out.stdout).contains("t0ken-value") && !text(&out.stderr).contains("t0ken-value"));

    assert_eq!(site.output("prod", "env"), "install|prod|shop|1.0.0|CNAB-Claims-1.0.0");
    assert_eq!(site.output("prod", "port"), "8080", "the default applies");
    assert_eq!(site.output("prod", "greeting"), "hello");
    assert_eq!(site.output("prod", "token"), "t0ken-value", "an explicitly named sensitive output is shown");
    assert_eq!(site.output("prod", "claim"), "yes");
    assert_eq!(site.output("prod", "mapping"), "none");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&site.bundle).unwrap()));
    assert_eq!(site.output("prod", "bundle").trim(), sha, "/cnab/bundle.json holds the exact bytes");
    let listed = site.ferry(&["outputs", "prod"]);
    ok(&listed);
    assert!(!text(&listed.stdout).contains("t0ken-value"), "a writeOnly output is not listed with the others");

    let first_revision = site.output("prod", "revision");
    ok(&site.ferry(&["upgrade", "prod", "--param", "port=9090", "--cred", "token=value:other"]));
    assert_eq!(site.output("prod", "port"), "9090");
    assert_eq!(site.output("prod", "greeting"), "hello", "upgrade keeps the values the last action used");
    let upgraded = site.output("prod", "revision");
    assert_ne!(upgraded, first_revision);

    ok(&site.ferry(&["invoke", "prod", "status", "--cred", "token=value:x"]));
    assert_eq!(site.output("prod", "revision"), upgraded, "an action that does not modify keeps the revision");
    ok(&site.ferry(&["invoke", "prod", "migrate", "--cred", "token=value:x"]));
    assert_ne!(site.output("prod", "revision"), upgraded);

    let shown = site.show("prod");
    let actions: Vec<&str> =
        shown["actions"].as_array().unwrap().iter().map(|a| a["claim"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["install", "upgrade", "status", "migrate"]);
    for a in shown["actions"].as_array().unwrap() {
        assert_eq!(a["result"]["status"], "succeeded");
        assert!(a["claim"]["parameters"].get("greeting").is_some());
        assert!(!a.to_string().contains("t0ken-value"), "no credential in a claim or result");
        assert!(a["result"]["outputs"]["port"]["contentDigest"].as_str().unwrap().starts_with("sha256:"));
    }
    let claims: Vec<Value> = shown["actions"].as_array().unwrap().iter().map(|a| a["claim"].clone()).collect();
    let results: Vec<Value> = shown["actions"].as_array().unwrap().iter().map(|a| a["result"].clone()).collect();
    if let Some(verdicts) = common::official_schema::verdicts("claim.schema.json", &claims) {
        assert!(verdicts.iter().all(|v| *v), "claims the official schema refuses: {verdicts:?}");
    }
    if let Some(verdicts) = common::official_schema::verdicts("claim-result.schema.json", &results) {
        assert!(verdicts.iter().all(|v| *v), "results the official schema refuses: {verdicts:?}");
    }

    let again = site.ferry(&["install", "prod", bundle, "--param", "greeting=x", "--cred", "token=value:x"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("ferry upgrade prod"), "{}", text(&again.stderr));

    ok(&site.ferry(&["uninstall", "prod", "--cred", "token=value:x"]));
    let list = site.ferry(&["installations", "list", "--format", "json"]);
    ok(&list);
    assert_eq!(serde_json::from_slice::<Value>(&list.stdout).unwrap(), json!([]));
    let all = site.ferry(&["installations", "list", "--all", "--format", "json"]);
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!((all[0]["name"].as_str(), all[0]["lastAction"].as_str()), (Some("prod"), Some("uninstall")));
}

fn a_failing_run_is_recorded_as_failed_with_its_exit_status(site: Site) {
    let bundle = site.bundle.to_str().unwrap();
    let out = site.ferry(&[
        "install",
        "bad",
        bundle,
        "--param",
        "greeting=hi",
        "--param",
        "fail=yes",
        "--cred",
        "token=value:x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("failing as asked"), "the run tool's stderr streams to the operator");
    let shown = site.show("bad");
    let result = &shown["actions"][0]["result"];
    assert_eq!(result["status"], "failed");
    // WASI 0.2's stable `exit` tells only success from failure: a component's exit(3) is 1.
    let status = if site.podman.is_some() { "status 3" } else { "status 1" };
    assert!(result["message"].as_str().unwrap().contains(status), "{result}");
    if let Some(podman) = &site.podman {
        let claim = shown["actions"][0]["claim"]["id"].as_str().unwrap();
        let filter = format!("label=io.ferry.run={claim}");
        let containers = Command::new("podman")
            .args(["--url", &podman.socket, "ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])
            .output()
            .unwrap();
        assert!(containers.status.success(), "{}", text(&containers.stderr));
        assert_eq!(text(&containers.stdout).trim(), "", "the container is removed");
    }
}

#[test]
fn inputs_that_break_the_bundle_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = json!({
        "schemaVersion": "v1.2.0", "name": "shop", "version": "1.0.0",
        "invocationImages": [{ "image": "127.0.0.1:9/never/pulled:1" }],
        "definitions": { "port": { "type": "integer", "maximum": 100 }, "s": { "type": "string" } },
        "parameters": { "port": { "definition": "port", "destination": { "env": "PORT" } } },
        "credentials": { "token": { "env": "TOKEN", "required": true } },
        "outputs": { "escape": { "definition": "s", "path": "/cnab/app/outputs/../run" } },
    });
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, bundle.to_string()).unwrap();
    let path = path.to_str().unwrap();
    let store = dir.path().join("ferry.db");
    let run = |args: &[&str]| {
        ferry_command(dir.path())
            .args(args)
            .env("FERRY_STORE", &store)
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .output()
            .unwrap()
    };
    let cases: [(&[&str], &str); 5] = [
        (&["--param", "port=eighty", "--cred", "token=value:s3cret"], "\"port\": \"eighty\" is not integer (type)"),
        (&["--param", "port=101", "--cred", "token=value:s3cret"], "greater than the maximum 100 (maximum)"),
        (
            &["--param", "colour=red", "--cred", "token=value:s3cret"],
            "\"colour\": the bundle declares no such parameter",
        ),
        (&[], "credential \"token\": required for install"),
        (&["--cred", "token=command:echo s3cret; exit 4"], "credential \"token\""),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["install", "prod", path];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "a credential value was shown: {stderr}");
    }
    let out = run(&["install", "prod", path, "--cred", "token=value:s"]);
    assert!(text(&out.stderr).contains("is not a file inside /cnab/app/outputs/"), "{}", text(&out.stderr));
    let out = run(&["install", "bad\nname", path, "--cred", "token=value:s"]);
    assert!(text(&out.stderr).contains("installation name \"bad\\nname\" holds"), "{}", text(&out.stderr));

    let mut unrunnable = bundle.clone();
    unrunnable["invocationImages"][0]["imageType"] = json!("vm-disk");
    unrunnable["outputs"] = json!({});
    let unrunnable_path = dir.path().join("wasm.json");
    std::fs::write(&unrunnable_path, unrunnable.to_string()).unwrap();
    let out = run(&["install", "prod", unrunnable_path.to_str().unwrap(), "--cred", "token=value:s"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no invocation image ferry can run"), "{stderr}");
    assert!(!stderr.contains("nonexistent.sock"), "the engine was contacted first: {stderr}");
    let list = run(&["installations", "list", "--all", "--format", "json"]);
    assert_eq!(text(&list.stdout).trim(), "[]", "nothing was recorded");
}

fn a_thick_bundle_installs_at_a_site_with_no_registry(site: Site) {
    let archive = site.dir.path().join("shop.tgz");
    ok(&site.ferry(&["export", site.bundle.to_str().unwrap(), "-o", archive.to_str().unwrap()]));
    let Site { dir, registry, podman, store, .. } = site;
    drop(registry);
    let site = Site { registry: TestRegistry::start(), dir, podman, bundle: archive.clone(), store };
    let out =
        site.ferry(&["install", "air", archive.to_str().unwrap(), "--param", "greeting=hi", "--cred", "token=value:x"]);
    ok(&out);
    let mapping: Value = serde_json::from_str(&site.output("air", "mapping")).unwrap();
    assert_eq!(mapping.as_object().unwrap().len(), 0, "the invocation image is not among the artifacts: {mapping}");
    assert_eq!(
        site.output("air", "artifacts").trim(),
        "",
        "a bundle with only an invocation image places no artifacts"
    );
}

fn a_relocated_bundle_runs_its_invocation_image_from_the_relocated_reference(site: Site) {
    let target = TestRegistry::start();
    let mapping = site.dir.path().join("mapping.json");
    let out = site
        .command(&[
            "relocate",
            site.bundle.to_str().unwrap(),
            "--to",
            &format!("{}/site", target.host),
            "-o",
            mapping.to_str().unwrap(),
        ])
        .args(["--insecure-registry", &target.host])
        .output()
        .unwrap();
    ok(&out);
    let Site { dir, registry, podman, bundle, store } = site;
    drop(registry);
    let site = Site { registry: target, dir, podman, bundle, store };
    let out = site.ferry(&[
        "install",
        "moved",
        site.bundle.to_str().unwrap(),
        "--relocation-mapping",
        mapping.to_str().unwrap(),
        "--param",
        "greeting=hi",
        "--cred",
        "token=value:x",
    ]);
    ok(&out);
    assert_eq!(site.output("moved", "mapping").as_bytes(), std::fs::read(&mapping).unwrap().as_slice());
}

fn one_action_at_a_time_and_an_interrupted_or_lost_action_is_recorded(site: Site) {
    let inputs = ["--param", "greeting=hi", "--cred", "token=value:x"];
    let mut slow = site.start_running("busy", &inputs);
    let second = site.ferry(&["upgrade", "busy", "--cred", "token=value:x"]);
    assert_eq!(second.status.code(), Some(1));
    let claim = site.show("busy")["actions"][0]["claim"]["id"].as_str().unwrap().to_owned();
    assert!(
        text(&second.stderr).contains(&format!("install (claim {claim}) has been running")),
        "{}",
        text(&second.stderr)
    );

    // Ctrl-C: the run is stopped (a container also removed), the action recorded as canceled.
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(slow.id() as i32, libc::SIGINT) };
    let status = slow.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(site.show("busy")["actions"][0]["result"]["status"], "canceled");
    if let Some(podman) = &site.podman {
        let filter = format!("label=io.ferry.run={claim}");
        let left = Command::new("podman")
            .args(["--url", &podman.socket, "ps", "-a", "--filter", &filter, "-q"])
            .output()
            .unwrap();
        assert_eq!(text(&left.stdout).trim(), "", "the canceled run's container is removed");
    }

    // A ferry killed outright leaves `running`; the next command records it as unknown.
    let mut lost = site.start_running("lost", &inputs);
    lost.kill().unwrap();
    lost.wait().unwrap();
    let next = site.ferry(&["upgrade", "lost", "--cred", "token=value:x"]);
    assert!(text(&next.stderr).contains("never finished; recorded as unknown"), "{}", text(&next.stderr));
    let actions = site.show("lost")["actions"].clone();
    assert_eq!(actions[0]["result"]["status"], "unknown");
    // The killed ferry could not remove its container.
    if let Some(podman) = &site.podman {
        let filter = format!("label=io.ferry.run={}", actions[0]["claim"]["id"].as_str().unwrap());
        let _ = Command::new("podman").args(["--url", &podman.socket, "rm", "-f", "--filter", &filter]).output();
    }
}

fn what_the_engine_or_the_run_tool_gets_wrong_is_named(site: Site) {
    let bundle = site.bundle.to_str().unwrap();
    let inputs = ["--param", "greeting=hi", "--cred", "token=value:x"];

    if site.podman.is_some() {
        let out = site
            .command(&["install", "nowhere", bundle])
            .args(inputs)
            .env("DOCKER_HOST", "unix:///nonexistent/engine.sock")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("/nonexistent/engine.sock") && stderr.contains("podman system service"), "{stderr}");
    }

    let out = site.command(&["install", "capped", bundle, "--output-limit", "4B"]).args(inputs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let result = &site.show("capped")["actions"][0]["result"];
    assert_eq!(result["status"], "failed");
    let message = result["message"].as_str().unwrap();
    assert!(message.contains("an output may hold") && message.contains("--output-limit"), "{result}");

    let mut doc: Value = serde_json::from_slice(&std::fs::read(&site.bundle).unwrap()).unwrap();
    doc["invocationImages"][0]["contentDigest"] = json!(format!("sha256:{}", "0".repeat(64)));
    let pinned = site.dir.path().join("wrong-digest.json");
    std::fs::write(&pinned, doc.to_string()).unwrap();
    let out = site.command(&["install", "pinned", pinned.to_str().unwrap()]).args(inputs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("contentDigest"), "{}", text(&out.stderr));
    assert_eq!(site.ferry(&["installations", "show", "pinned"]).status.code(), Some(1), "nothing was recorded");
}

#[test]
fn an_image_that_cannot_be_pulled_a_missing_output_and_a_lost_engine_are_named() {
    let mut site = Site::new();
    let inputs = ["--param", "greeting=hi", "--cred", "token=value:x"];
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&site.bundle).unwrap()).unwrap();

    let mut missing = doc.clone();
    missing["invocationImages"][0]["image"] = json!(format!("{}/shop/absent:1", site.registry.host));
    let path = site.dir.path().join("absent.json");
    std::fs::write(&path, missing.to_string()).unwrap();
    let out = site.command(&["install", "absent", path.to_str().unwrap()]).args(inputs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("shop/absent:1"), "{}", text(&out.stderr));
    assert_eq!(site.ferry(&["installations", "show", "absent"]).status.code(), Some(1), "nothing was recorded");

    doc["outputs"]["never"] =
        json!({ "definition": "plain", "path": "/cnab/app/outputs/never", "applyTo": ["install"] });
    let path = site.dir.path().join("never.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let out = site.command(&["install", "never", path.to_str().unwrap()]).args(inputs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let result = &site.show("never")["actions"][0]["result"];
    assert_eq!(result["status"], "failed");
    assert!(result["message"].as_str().unwrap().contains("did not write the output(s) never"), "{result}");

    let mut lost = site.start_running("lost", &inputs);
    std::thread::sleep(Duration::from_secs(1));
    let podman = site.podman.as_mut().unwrap();
    podman.child.kill().unwrap();
    podman.child.wait().unwrap();
    assert_eq!(lost.wait().unwrap().code(), Some(1));
    let shown = site.show("lost");
    let claim = shown["actions"][0]["claim"]["id"].as_str().unwrap().to_owned();
    let result = &shown["actions"][0]["result"];
    assert_eq!(result["status"], "unknown", "{result}");
    assert!(result["message"].as_str().unwrap().contains("engine was lost"), "{result}");
    // The engine's service is gone; podman itself removes what the lost run left.
    let _ = Command::new("podman").args(["rm", "-f", "--filter", &format!("label=io.ferry.run={claim}")]).output();
}

#[test]
fn a_damaged_or_locked_sqlite_store_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ferry.db");
    let list = || ferry_command(dir.path()).args(["installations", "list", "--store"]).arg(&store).output().unwrap();
    ok(&list());

    // Another program holding a write transaction open: ferry waits for it, then says so.
    let holder = rusqlite::Connection::open(&store).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = list();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&store.display().to_string()) && stderr.contains("kept it locked"), "{stderr}");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    ok(&list());

    let noise: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&store, noise).unwrap();
    let out = list();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&store.display().to_string()) && stderr.contains("damaged, or not a ferry store"),
        "{stderr}"
    );
}
