//! Device checks: read-only commands run on devices through a `DeviceCli` (Catalyst Center's
//! Command Runner today; a RADKit backend can implement the same trait), their outputs kept in
//! a content-addressed `SnapshotStore` outside workflow history, and the verification rules
//! (`changeflow_workflows::verification::Rule`) evaluated against them.

use crate::catalyst::{CatalystClient, CommandStatus, DeviceOutputs};
use crate::http::DownstreamError;
use changeflow_workflows::verification::{INTERFACES, RUNNING_CONFIG, Rule, RuleFailure};
use changeflow_workflows::{CheckPhase, DeviceRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;

/// Runs read-only commands on devices.
pub trait DeviceCli: Send + Sync {
    /// Each device's outputs, by hostname. A device that does not answer has every command
    /// under `Failure`.
    fn run(
        &self,
        devices: &[DeviceRef],
        commands: &[String],
        name: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, DeviceOutputs>, DownstreamError>> + Send;
}

impl DeviceCli for CatalystClient {
    async fn run(
        &self,
        devices: &[DeviceRef],
        commands: &[String],
        name: &str,
    ) -> Result<BTreeMap<String, DeviceOutputs>, DownstreamError> {
        let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
        let mut by_id = self.run_commands(&ids, commands, name).await?;
        Ok(devices
            .iter()
            .map(|d| (d.hostname.clone(), by_id.remove(&d.id).unwrap_or_default()))
            .collect())
    }
}

/// What one device answered at one moment of one change: kept as evidence, referenced from
/// history by its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub change_id: String,
    pub phase: CheckPhase,
    pub device: String,
    /// RFC 3339, when the outputs were captured.
    pub captured_at: String,
    pub outputs: DeviceOutputs,
}

impl Snapshot {
    fn output(&self, command: &str) -> Option<&str> {
        self.outputs
            .get(command)
            .filter(|o| o.status == CommandStatus::Success)
            .map(|o| o.text.as_str())
    }
}

/// Snapshots as files named by the SHA-256 of their content (`<dir>/<hex>.json`): written once,
/// never changed, checked against their name when read. Workers that share checks of one
/// change must share the directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, reference: &str) -> Result<PathBuf, DownstreamError> {
        let hex = reference
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| {
                DownstreamError::Configuration(format!("not a snapshot reference: {reference}"))
            })?;
        Ok(self.dir.join(format!("{hex}.json")))
    }

    /// Stores a snapshot; returns its reference, `sha256:<hex>`.
    pub fn put(&self, snapshot: &Snapshot) -> Result<String, DownstreamError> {
        let bytes = serde_json::to_vec_pretty(snapshot)
            .map_err(|e| DownstreamError::Configuration(format!("snapshot: {e}")))?;
        let reference = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let path = self.path(&reference)?;
        if !path.exists() {
            let failed = |e: std::io::Error| {
                DownstreamError::Configuration(format!(
                    "cannot store snapshot in {}: {e}",
                    self.dir.display()
                ))
            };
            std::fs::create_dir_all(&self.dir).map_err(failed)?;
            let partial = path.with_extension(format!("{}.partial", std::process::id()));
            std::fs::write(&partial, &bytes).map_err(failed)?;
            std::fs::rename(&partial, &path).map_err(failed)?;
        }
        Ok(reference)
    }

    /// Reads a snapshot back, refusing one whose content no longer matches its reference.
    pub fn get(&self, reference: &str) -> Result<Snapshot, DownstreamError> {
        let path = self.path(reference)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            DownstreamError::Configuration(format!(
                "snapshot {reference} is not in {} ({e}); workers checking one change must share --snapshot-dir",
                self.dir.display()
            ))
        })?;
        if format!("sha256:{}", hex::encode(Sha256::digest(&bytes))) != reference {
            return Err(DownstreamError::Configuration(format!(
                "snapshot {reference} was altered"
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| DownstreamError::Configuration(format!("snapshot {reference}: {e}")))
    }
}

/// The most lines a failure quotes, and the longest quoted line.
const QUOTED_LINES: usize = 10;
const QUOTED_LINE_MAX: usize = 200;

/// What the rules read besides the device's current outputs.
pub struct Expectations<'a> {
    /// The configuration the change rendered.
    pub rendered: &'a str,
    pub parameters: &'a BTreeMap<String, String>,
    /// The device before the change, for the rules comparing before and after.
    pub baseline: Option<&'a Snapshot>,
}

/// The rules `now` breaks, each with the lines that show it.
pub fn evaluate(rules: &[Rule], now: &Snapshot, expected: &Expectations) -> Vec<RuleFailure> {
    rules
        .iter()
        .filter_map(|rule| check(rule, now, expected).err())
        .collect()
}

fn failure(rule: &Rule, detail: impl Into<String>, lines: Vec<String>) -> RuleFailure {
    RuleFailure {
        rule: rule.name(),
        detail: detail.into(),
        lines: lines
            .into_iter()
            .take(QUOTED_LINES)
            .map(|l| l.chars().take(QUOTED_LINE_MAX).collect())
            .collect(),
    }
}

/// The output of `command`, or the failure saying it did not answer.
fn needed<'a>(rule: &Rule, snapshot: &'a Snapshot, command: &str) -> Result<&'a str, RuleFailure> {
    snapshot.output(command).ok_or_else(|| {
        let said = snapshot
            .outputs
            .get(command)
            .map(|o| o.text.trim().to_string())
            .unwrap_or_else(|| "not captured".into());
        failure(rule, format!("\"{command}\" did not answer"), vec![said])
    })
}

/// The configuration lines that matter: trimmed, without blanks and `!` comments.
fn config_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('!'))
        .map(str::to_string)
        .collect()
}

/// Ports and their status from `show interfaces status`.
fn port_status(text: &str) -> BTreeMap<String, (String, String)> {
    let status_words = [
        "connected",
        "notconnect",
        "disabled",
        "err-disabled",
        "inactive",
    ];
    text.lines()
        .skip_while(|l| !l.starts_with("Port"))
        .skip(1)
        .filter_map(|line| {
            let port = line.split_whitespace().next()?;
            let status = line.split_whitespace().find(|w| status_words.contains(w))?;
            Some((port.to_string(), (status.to_string(), line.to_string())))
        })
        .collect()
}

fn check(rule: &Rule, now: &Snapshot, expected: &Expectations) -> Result<(), RuleFailure> {
    match rule {
        Rule::Reachable => {
            let failed: Vec<String> = now
                .outputs
                .iter()
                .filter(|(_, o)| o.status != CommandStatus::Success)
                .map(|(command, o)| format!("{command}: {}", o.text.trim()))
                .collect();
            if now.outputs.is_empty() {
                Err(failure(rule, "the device gave no answer", vec![]))
            } else if failed.is_empty() {
                Ok(())
            } else {
                Err(failure(
                    rule,
                    format!("{} command(s) did not answer", failed.len()),
                    failed,
                ))
            }
        }
        Rule::RenderedLinesPresent => {
            let config: BTreeSet<String> = config_lines(needed(rule, now, RUNNING_CONFIG)?)
                .into_iter()
                .collect();
            let missing: Vec<String> = config_lines(expected.rendered)
                .into_iter()
                .filter(|l| !config.contains(l))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(failure(
                    rule,
                    format!(
                        "{} rendered line(s) missing from the running config",
                        missing.len()
                    ),
                    missing,
                ))
            }
        }
        Rule::InterfacesNotDown => {
            let Some(before) = expected.baseline else {
                return Ok(());
            };
            let Some(before) = before.output(INTERFACES) else {
                return Ok(());
            };
            let after = port_status(needed(rule, now, INTERFACES)?);
            let down: Vec<String> = port_status(before)
                .into_iter()
                .filter(|(_, (status, _))| status == "connected")
                .filter_map(|(port, _)| match after.get(&port) {
                    Some((status, _)) if status == "connected" => None,
                    Some((_, line)) => Some(line.clone()),
                    None => Some(format!("{port} (no longer listed)")),
                })
                .collect();
            if down.is_empty() {
                Ok(())
            } else {
                Err(failure(
                    rule,
                    format!("{} interface(s) up before the change are down", down.len()),
                    down,
                ))
            }
        }
        Rule::ChangeLinesRemoved => {
            let before: BTreeSet<String> = expected
                .baseline
                .and_then(|b| b.output(RUNNING_CONFIG))
                .map(config_lines)
                .unwrap_or_default()
                .into_iter()
                .collect();
            let config: BTreeSet<String> = config_lines(needed(rule, now, RUNNING_CONFIG)?)
                .into_iter()
                .collect();
            let left: Vec<String> = config_lines(expected.rendered)
                .into_iter()
                .filter(|l| !l.starts_with("interface ") && !before.contains(l))
                .filter(|l| config.contains(l))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(failure(
                    rule,
                    format!("{} line(s) of the change are still configured", left.len()),
                    left,
                ))
            }
        }
        Rule::OutputContains { command, text } => {
            let wanted = expected
                .parameters
                .iter()
                .fold(text.clone(), |t, (name, value)| {
                    t.replace(&format!("{{{{{name}}}}}"), value)
                });
            let output = needed(rule, now, command)?;
            if output.contains(&wanted) {
                Ok(())
            } else {
                Err(failure(
                    rule,
                    format!("\"{command}\" does not show \"{wanted}\""),
                    output.lines().map(str::to_string).collect(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalyst::CommandOutput;

    fn answered(text: &str) -> CommandOutput {
        CommandOutput {
            status: CommandStatus::Success,
            text: text.to_string(),
        }
    }

    fn snapshot(
        change_id: &str,
        phase: CheckPhase,
        device: &str,
        captured_at: String,
        outputs: DeviceOutputs,
    ) -> Snapshot {
        Snapshot {
            change_id: change_id.to_string(),
            phase,
            device: device.to_string(),
            captured_at,
            outputs,
        }
    }

    const INTERFACES_UP: &str = "Port         Name               Status       Vlan       Duplex  Speed Type\nGi1/0/1      uplink             connected    trunk      a-full a-1000 10/100/1000BaseTX\nGi1/0/2      peer               connected    trunk      a-full a-1000 10/100/1000BaseTX\nGi1/0/3                         notconnect   1            auto   auto 10/100/1000BaseTX\n";

    fn snap(config: &str, interfaces: &str) -> Snapshot {
        let mut outputs = DeviceOutputs::new();
        outputs.insert(
            RUNNING_CONFIG.into(),
            answered(&format!("Building configuration...\n!\n{config}!\nend\n")),
        );
        outputs.insert(INTERFACES.into(), answered(interfaces));
        snapshot("c", CheckPhase::PostChange, "sw1", "now".into(), outputs)
    }

    fn rules() -> Vec<Rule> {
        vec![
            Rule::Reachable,
            Rule::RenderedLinesPresent,
            Rule::InterfacesNotDown,
        ]
    }

    #[test]
    fn a_healthy_change_passes_and_a_broken_one_names_rule_and_lines() {
        let params = BTreeMap::new();
        let before = snap("hostname sw1\n", INTERFACES_UP);
        let expected = Expectations {
            rendered: "ntp server 10.0.0.1 prefer\n!\n",
            parameters: &params,
            baseline: Some(&before),
        };
        let good = snap("hostname sw1\nntp server 10.0.0.1 prefer\n", INTERFACES_UP);
        assert!(evaluate(&rules(), &good, &expected).is_empty());

        let down = INTERFACES_UP.replace(
            "Gi1/0/2      peer               connected",
            "Gi1/0/2      peer               notconnect",
        );
        let bad = snap("hostname sw1\n", &down);
        let failures = evaluate(&rules(), &bad, &expected);
        let names: Vec<&str> = failures.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(names, ["rendered_lines_present", "interfaces_not_down"]);
        assert_eq!(failures[0].lines, ["ntp server 10.0.0.1 prefer"]);
        assert!(failures[1].lines[0].starts_with("Gi1/0/2"));
    }

    #[test]
    fn an_unreachable_device_fails_reachable_and_every_rule_reading_output() {
        let mut outputs = DeviceOutputs::new();
        for command in [RUNNING_CONFIG, INTERFACES] {
            outputs.insert(
                command.into(),
                CommandOutput {
                    status: CommandStatus::Failure,
                    text: "Device is not reachable".into(),
                },
            );
        }
        let dead = snapshot("c", CheckPhase::PreChange, "sw1", "now".into(), outputs);
        let params = BTreeMap::new();
        let failures = evaluate(
            &rules(),
            &dead,
            &Expectations {
                rendered: "x\n",
                parameters: &params,
                baseline: None,
            },
        );
        assert_eq!(failures[0].rule, "reachable");
        assert!(failures[0].lines[0].contains("not reachable"));
        assert_eq!(failures[1].detail, "\"show running-config\" did not answer");
    }

    #[test]
    fn a_back_out_must_remove_what_the_change_added_and_parameters_fill_texts() {
        let params = BTreeMap::from([("ntp_primary".to_string(), "10.0.0.1".to_string())]);
        let before = snap("hostname sw1\nclock timezone UTC 0\n", INTERFACES_UP);
        let expected = Expectations {
            rendered: "ntp server 10.0.0.1 prefer\nclock timezone UTC 0\ninterface Gi1/0/5\n",
            parameters: &params,
            baseline: Some(&before),
        };
        let restored = snap("hostname sw1\nclock timezone UTC 0\n", INTERFACES_UP);
        assert!(evaluate(&[Rule::ChangeLinesRemoved], &restored, &expected).is_empty());
        let left = snap(
            "hostname sw1\nclock timezone UTC 0\nntp server 10.0.0.1 prefer\n",
            INTERFACES_UP,
        );
        let failures = evaluate(&[Rule::ChangeLinesRemoved], &left, &expected);
        assert_eq!(failures[0].lines, ["ntp server 10.0.0.1 prefer"]);

        let contains = Rule::OutputContains {
            command: RUNNING_CONFIG.into(),
            text: "ntp server {{ntp_primary}}".into(),
        };
        assert!(evaluate(std::slice::from_ref(&contains), &left, &expected).is_empty());
        assert_eq!(evaluate(&[contains], &restored, &expected).len(), 1);
    }

    #[test]
    fn snapshots_are_content_addressed_and_tamper_evident() {
        let dir = std::env::temp_dir().join(format!("changeflow-snapshots-{}", std::process::id()));
        let store = SnapshotStore::new(&dir);
        let snapshot = snap("hostname sw1\n", INTERFACES_UP);
        let reference = store.put(&snapshot).unwrap();
        assert!(reference.starts_with("sha256:"));
        assert_eq!(
            store.put(&snapshot).unwrap(),
            reference,
            "same content, same name"
        );
        assert_eq!(store.get(&reference).unwrap(), snapshot);
        let path = dir.join(format!("{}.json", &reference["sha256:".len()..]));
        std::fs::write(&path, b"{}").unwrap();
        assert!(
            store
                .get(&reference)
                .unwrap_err()
                .to_string()
                .contains("altered")
        );
        assert!(store.get("sha256:../../etc/passwd").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
