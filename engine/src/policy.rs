//! Authorization as data: Rego policies in a directory, evaluated by the embedded `regorus`
//! engine. A decision carries its reason and the policy revision (a content hash) for the audit
//! record. Anything other than a well-formed `allow: true` is a deny: undefined results,
//! evaluation errors and hitting the execution limit included. Policies reload when the files
//! change; a bad edit keeps the last good policy and logs why.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The rule every decision is read from.
const DECISION_RULE: &str = "data.changeflow.authz.decision";
/// Wall-clock budget of one evaluation: generous, since it exists to stop runaway policies
/// (a loaded machine running a debug build was seen to take 0.5 s), not to set latency.
pub const DEFAULT_EVALUATION_LIMIT: Duration = Duration::from_secs(2);

/// Who is asking, as verified from their token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyIdentity {
    pub subject: String,
    pub groups: Vec<String>,
    /// Authentication methods (`mfa` when a second factor was used).
    pub amr: Vec<String>,
    pub client_id: String,
}

impl From<&crate::identity::VerifiedIdentity> for PolicyIdentity {
    fn from(identity: &crate::identity::VerifiedIdentity) -> Self {
        PolicyIdentity {
            subject: identity.subject.clone(),
            groups: identity.groups.clone(),
            amr: identity.amr.clone(),
            client_id: identity.client_id.clone().unwrap_or_default(),
        }
    }
}

/// Everything a policy decides on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInput {
    pub identity: PolicyIdentity,
    /// The MCP server the tool belongs to, e.g. `catalyst-center`.
    pub resource: String,
    /// `read`, `write` or `execute`.
    pub action: String,
    pub tool: PolicyTool,
    pub context: serde_json::Value,
    /// For tools naming an existing change: facts about it (`requested_by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<serde_json::Value>,
    /// For `deploy_template`: its devices as Catalyst Center describes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<serde_json::Value>>,
    /// For `deploy_template` from Git: the source resolved (commit, default branch, the pull
    /// request that merged it and its approvers), or `{unresolved: why}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<serde_json::Value>,
    /// For `merge_pull_request`: the pull request (author, base, default branch, approvers),
    /// or `{unknown: why}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyTool {
    pub name: String,
    pub arguments: serde_json::Value,
}

/// The answer, with what the audit record needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDecision {
    pub allow: bool,
    pub reason: String,
    /// Content hash of the policy files that decided.
    pub revision: String,
}

/// Errors loading policies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy directory or a file in it could not be read.
    #[error("policy directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No `.rego` file was found.
    #[error("no .rego files in {0}")]
    Empty(PathBuf),
    /// A policy did not parse or compile.
    #[error("policy {file}: {message}")]
    Invalid { file: String, message: String },
}

struct Loaded {
    /// The policy as the interpreter holds it (its Rego unit tests run there).
    engine: regorus::Engine,
    /// The decision rule compiled for regorus' virtual machine, which decides about ten times
    /// faster than the interpreter (`policy_decides_the_same_on_the_vm_as_in_the_interpreter`).
    compiled: regorus::CompiledPolicy,
    program: Arc<regorus::rvm::program::Program>,
    /// Machines ready to decide: a call takes one (or makes one) and gives it back, so calls
    /// decide in parallel and never wait for each other.
    pool: Mutex<Vec<regorus::rvm::vm::RegoVM>>,
    limit: Duration,
    revision: String,
    /// The files of this revision: (name, text).
    files: Vec<(String, String)>,
}

/// Instructions one decision may run: far beyond any real policy, so that the time limit is
/// what stops a runaway one.
const MAX_INSTRUCTIONS: usize = 1 << 40;

/// How many idle machines a revision keeps.
const POOLED_MACHINES: usize = 64;

impl Loaded {
    fn machine(&self) -> Result<regorus::rvm::vm::RegoVM, String> {
        let mut vm = regorus::rvm::vm::RegoVM::new_with_policy(self.compiled.clone());
        vm.load_program(self.program.clone());
        vm.set_data(regorus::Value::new_object())
            .map_err(|e| e.to_string())?;
        // The time limit stops a runaway policy; the machine's own instruction budget (25,000
        // by default) would refuse a legitimate decision on a large change.
        vm.set_execution_timer_config(Some(timer(self.limit)));
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        Ok(vm)
    }

    /// The decision rule's value for `input`.
    fn evaluate(&self, input: regorus::Value) -> Result<regorus::Value, String> {
        let taken = self.pool.lock().expect("policy pool").pop();
        let mut vm = match taken {
            Some(vm) => vm,
            None => self.machine()?,
        };
        vm.set_input(input);
        let value = vm
            .execute_entry_point_by_name(DECISION_RULE)
            .map_err(|e| e.to_string());
        let mut pool = self.pool.lock().expect("policy pool");
        if pool.len() < POOLED_MACHINES {
            pool.push(vm);
        }
        value
    }
}

fn timer(limit: Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    }
}

/// The loaded policy set; cheap to share behind an `Arc`.
pub struct PolicyEngine {
    dir: PathBuf,
    limit: Duration,
    loaded: Mutex<Arc<Loaded>>,
}

impl PolicyEngine {
    /// Loads every `.rego` file in `dir`; fails if any is invalid (at start, nothing is known good).
    pub fn load(dir: impl Into<PathBuf>) -> Result<Self, PolicyError> {
        Self::load_with_limit(dir, DEFAULT_EVALUATION_LIMIT)
    }

    pub fn load_with_limit(dir: impl Into<PathBuf>, limit: Duration) -> Result<Self, PolicyError> {
        let dir = dir.into();
        let loaded = compile(&dir, limit)?;
        tracing::info!(revision = %loaded.revision, dir = %dir.display(), "policy loaded");
        Ok(Self {
            dir,
            limit,
            loaded: Mutex::new(Arc::new(loaded)),
        })
    }

    /// The revision currently deciding.
    pub fn revision(&self) -> String {
        self.current().revision.clone()
    }

    /// The revision currently deciding and its files' texts, (name, text) in name order.
    pub fn sources(&self) -> (String, Vec<(String, String)>) {
        let loaded = self.current();
        (loaded.revision.clone(), loaded.files.clone())
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded.lock().expect("policy lock").clone()
    }

    /// Reloads when the files changed. Returns the new revision, `None` when nothing changed, or
    /// the error that left the last good policy in place.
    pub fn reload(&self) -> Result<Option<String>, PolicyError> {
        let fingerprint = revision_of(&read_policies(&self.dir)?);
        if fingerprint == self.revision() {
            return Ok(None);
        }
        let loaded = compile(&self.dir, self.limit)?;
        let revision = loaded.revision.clone();
        *self.loaded.lock().expect("policy lock") = Arc::new(loaded);
        tracing::info!(%revision, "policy reloaded");
        Ok(Some(revision))
    }

    /// Polls the directory every `interval` and reloads on change, until the task is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let policy = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(policy) = policy.upgrade() else {
                    return;
                };
                if let Err(error) = policy.reload() {
                    tracing::error!(%error, revision = %policy.revision(), "policy reload failed; keeping the last good policy");
                }
            }
        })
    }

    /// Decides; never fails: every problem is a deny with the problem as the reason.
    pub fn decide(&self, input: &PolicyInput) -> PolicyDecision {
        let loaded = self.current();
        let revision = loaded.revision.clone();
        let deny = |reason: String| PolicyDecision {
            allow: false,
            reason,
            revision: revision.clone(),
        };
        let input = match serde_json::to_value(input) {
            Ok(input) => regorus::Value::from(input),
            Err(e) => return deny(format!("policy input could not be encoded: {e}")),
        };
        let value = match loaded.evaluate(input) {
            Ok(value) => value,
            Err(e) => return deny(format!("policy evaluation failed: {e}")),
        };
        let field = |name: &str| &value[&regorus::Value::from(name)];
        let reason = field("reason")
            .as_string()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "policy gave no reason".to_string());
        match field("allow").as_bool() {
            Ok(true) => PolicyDecision {
                allow: true,
                reason,
                revision,
            },
            Ok(false) => deny(reason),
            Err(_) => deny("policy returned no decision".into()),
        }
    }

    /// Runs every `test_*` rule of every `*_test` package; returns (rule, passed, detail).
    pub fn run_rego_tests(&self) -> Vec<(String, bool, String)> {
        let mut engine = self.current().engine.clone();
        let packages = engine.get_packages().unwrap_or_default();
        let mut results = Vec::new();
        for package in packages.iter().filter(|p| p.ends_with("_test")) {
            let rules: Vec<String> = rule_names(&engine, package);
            for rule in rules {
                let path = format!("{package}.{rule}");
                let outcome = engine.eval_rule(path.clone());
                let (passed, detail) = match outcome {
                    Ok(v) => (v == regorus::Value::from(true), format!("{v}")),
                    Err(e) => (false, e.to_string()),
                };
                results.push((path, passed, detail));
            }
        }
        results
    }
}

/// The `test_*` rule names declared in a package, read from the loaded policy sources.
fn rule_names(engine: &regorus::Engine, package: &str) -> Vec<String> {
    let package_line = format!("package {}", package.trim_start_matches("data."));
    let mut names = Vec::new();
    for source in engine.get_policies().unwrap_or_default() {
        let text = source.get_contents();
        if !text.lines().any(|l| l.trim() == package_line) {
            continue;
        }
        for line in text.lines() {
            let name: String = line
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name.starts_with("test_") && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// (file name, contents) of every `.rego` file, sorted by name.
fn read_policies(dir: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let io = |source| PolicyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "rego") {
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: path.clone(),
                source,
            })?;
            files.push((
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                text,
            ));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(PolicyError::Empty(dir.to_path_buf()));
    }
    Ok(files)
}

/// A policy revision: a content hash of its files, (name, text) in name order.
pub fn revision_of(files: &[(String, String)]) -> String {
    let mut hash = Sha256::new();
    for (name, text) in files {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())[..16].to_string()
}

fn compile(dir: &Path, limit: Duration) -> Result<Loaded, PolicyError> {
    let files = read_policies(dir)?;
    let mut engine = regorus::Engine::new();
    engine.set_execution_timer_config(timer(limit));
    for (name, text) in &files {
        engine
            .add_policy(name.clone(), text.clone())
            .map_err(|e| PolicyError::Invalid {
                file: name.clone(),
                message: e.to_string(),
            })?;
    }
    // Evaluate once with an empty input so rule errors surface at load, not on the first call.
    engine.set_input(regorus::Value::new_object());
    engine
        .eval_rule(DECISION_RULE.to_string())
        .map_err(|e| PolicyError::Invalid {
            file: "(all)".into(),
            message: e.to_string(),
        })?;
    let compiled = engine
        .clone()
        .compile_with_entrypoint(&DECISION_RULE.into())
        .map_err(|e| PolicyError::Invalid {
            file: "(all)".into(),
            message: e.to_string(),
        })?;
    let program = regorus::languages::rego::compiler::Compiler::compile_from_policy(
        &compiled,
        &[DECISION_RULE],
    )
    .map_err(|e| PolicyError::Invalid {
        file: "(all)".into(),
        message: e.to_string(),
    })?;
    let loaded = Loaded {
        engine,
        compiled,
        program,
        pool: Mutex::new(Vec::new()),
        limit,
        revision: revision_of(&files),
        files,
    };
    // The machine must decide too (an empty input), before this revision replaces the last.
    loaded
        .evaluate(regorus::Value::new_object())
        .map_err(|message| PolicyError::Invalid {
            file: "(all)".into(),
            message,
        })?;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every combination of caller, tool, arguments and facts below decides the same on the
    /// virtual machine as in the interpreter, reasons included.
    #[test]
    fn policy_decides_the_same_on_the_vm_as_in_the_interpreter() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy");
        let loaded = compile(&dir, DEFAULT_EVALUATION_LIMIT).unwrap();
        let callers = [
            ("alice", vec!["network-engineers"], vec!["pwd", "mfa"]),
            ("alice", vec!["network-engineers"], vec!["pwd"]),
            ("bob", vec!["service-desk"], vec!["pwd"]),
            ("carol", vec!["change-approvers"], vec!["pwd", "mfa"]),
            ("dave", vec!["developers"], vec!["pwd"]),
            ("erin", vec!["auditors"], vec!["pwd", "mfa"]),
            ("root", vec!["admin", "auditors"], vec!["mfa"]),
            ("nobody", vec![], vec![]),
        ];
        let ntp = "4b45b32b-3c7b-5f23-b5d2-0cff8e17d75f";
        let calls = [
            (
                "catalyst-center",
                "read",
                "list_devices",
                json!({"hostname": "sj-access-01"}),
            ),
            ("audit", "read", "search_audit", json!({})),
            (
                "approvals",
                "write",
                "approve_change",
                json!({"change_id": "c"}),
            ),
            (
                "servicenow",
                "write",
                "create_change_request",
                json!({"short_description": "x"}),
            ),
            (
                "catalyst-center",
                "execute",
                "deploy_template",
                json!({"template_id": ntp, "devices": ["sj-access-01"], "change_type": "standard"}),
            ),
            (
                "catalyst-center",
                "execute",
                "deploy_template",
                json!({"template_id": "other", "devices": ["lab-1"], "change_type": "standard"}),
            ),
            (
                "catalyst-center",
                "execute",
                "deploy_template",
                json!({"template_id": ntp, "devices": ["sj-core-01"], "change_type": "normal",
                       "approval_timeout": "800h"}),
            ),
            (
                "catalyst-center",
                "execute",
                "deploy_template",
                json!({"template_id": ntp, "devices": ["sj-core-01"], "change_type": "normal",
                       "window_start": "2026-11-27T18:00:00Z", "window_end": "2026-11-27T19:00:00Z"}),
            ),
        ];
        let facts = [
            (None, None),
            (
                Some(json!({"requested_by": "carol", "backout": null})),
                None,
            ),
            (
                Some(json!({"backout": {"template_id": "inverse"}})),
                Some(vec![
                    json!({"hostname": "sj-core-01", "role": "CORE", "family": "Switches"}),
                ]),
            ),
        ];
        let mut compared = 0;
        for (subject, groups, amr) in &callers {
            for (resource, action, tool, arguments) in &calls {
                for (change, devices) in &facts {
                    for time in [1_795_600_800u64, 1_795_514_400] {
                        let input = json!(PolicyInput {
                            identity: PolicyIdentity {
                                subject: subject.to_string(),
                                groups: groups.iter().map(|g| g.to_string()).collect(),
                                amr: amr.iter().map(|a| a.to_string()).collect(),
                                client_id: "test".into(),
                            },
                            resource: resource.to_string(),
                            action: action.to_string(),
                            tool: PolicyTool {
                                name: tool.to_string(),
                                arguments: arguments.clone(),
                            },
                            context: json!({"time": time, "client": "test"}),
                            change: change.clone(),
                            devices: devices.clone(),
                            source: None,
                            pull_request: None,
                        });
                        let on_vm = loaded
                            .evaluate(regorus::Value::from(input.clone()))
                            .unwrap();
                        let mut interpreter = loaded.engine.clone();
                        interpreter.set_input(regorus::Value::from(input.clone()));
                        let interpreted = interpreter.eval_rule(DECISION_RULE.into()).unwrap();
                        assert_eq!(on_vm, interpreted, "{input}");
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 8 * 8 * 3 * 2);
    }
}
