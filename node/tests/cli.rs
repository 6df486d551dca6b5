//! Fast checks of the `hubcat` binary itself. (Being an integration test of hubcat-node, this
//! file also makes `cargo test --workspace` build the binary the hubcat-tests crate runs.)

use std::process::{Command, Output};

fn hubcat(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubcat"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HUBCAT_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).output().expect("run hubcat")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_every_subcommand() {
    let out = hubcat(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for sub in [
        "init", "run", "publish", "withdraw", "show", "list", "status", "export", "verify", "key",
        "config", "demo",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "--help lists `{sub}`:\n{help}"
        );
    }
}

#[test]
fn config_example_prints_the_library_example() {
    let out = hubcat(&["config", "example"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), hubcat_config::example_toml());
}

#[test]
fn init_with_a_bad_country_names_the_flag_and_creates_no_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hub");
    let dir_s = dir.to_str().expect("utf-8");
    let out = hubcat(&[
        "init",
        "--data-dir",
        dir_s,
        "--name",
        "HDS",
        "--country",
        "Sweden",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--country"), "{err}");
    assert!(err.contains("Sweden"), "{err}");
    assert!(!dir.join("hub.key").exists());
    assert!(!dir.join("api.token").exists());

    // The same directory then takes a valid init.
    let out = hubcat(&[
        "init",
        "--data-dir",
        dir_s,
        "--name",
        "HDS",
        "--country",
        "SE",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).trim().starts_with("did:key:z6Mk"));
    assert!(dir.join("hub.key").exists());
}

#[test]
fn the_demo_federation_converges_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_s = dir.path().to_str().expect("utf-8 path");
    let out = hubcat(&["--json", "demo", "--no-wait", "--port", "0", "--dir", dir_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("demo prints JSON");
    assert_eq!(v["converged"], true, "{v}");
    let total = v["records"].as_u64().expect("record total");
    let hubs = v["hubs"].as_array().expect("a list of hubs");
    assert!(hubs.len() >= 3, "{hubs:?}");
    let names: Vec<&str> = hubs.iter().filter_map(|h| h["hub"].as_str()).collect();
    for expected in ["HDS", "HIS", "GAL-HEALTH-LAB", "OK!Thess"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let published: u64 = hubs.iter().filter_map(|h| h["published"].as_u64()).sum();
    assert_eq!(published, total);
    for h in hubs {
        // Every node holds every hub's records, not only its own.
        assert_eq!(h["records"].as_u64(), Some(total), "{h}");
        assert_eq!(h["digest"], hubs[0]["digest"], "{h}");
        assert!(h["did"]
            .as_str()
            .is_some_and(|d| d.starts_with("did:key:z6Mk")));
    }
    // Stopped cleanly: no node left behind holding the store, so a second start reuses it.
    let again = hubcat(&["--json", "demo", "--no-wait", "--port", "0", "--dir", dir_s]);
    assert!(again.status.success(), "{}", text(&again.stderr));
}
