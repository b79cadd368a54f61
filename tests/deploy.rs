//! What can be checked of the deployment files without a Docker engine: the compose file's
//! shape and every file it mounts (`tests/deploy/check_compose.py`), and the Prometheus
//! configuration it mounts (`promtool check config`, which also loads the alert rules).

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `make tools`)", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?}:\n{text}",
        program.display()
    );
    text
}

#[test]
fn the_compose_file_is_well_formed_and_mounts_only_what_exists() {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    let out = run(&python, &["tests/deploy/check_compose.py"]);
    assert_eq!(out.matches("ok: ").count(), 5, "{out}");
}

#[test]
fn the_prometheus_configuration_and_its_rules_pass_promtool() {
    let out = run(
        Path::new("/usr/bin/promtool"),
        &["check", "config", "deploy/prometheus/prometheus.yml"],
    );
    assert!(out.contains("5 rules found"), "{out}");
}
