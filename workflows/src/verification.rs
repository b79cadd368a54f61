//! How a change proves its effect on the devices and how it is undone: the verification
//! catalog (`policy/verification.toml`, per Catalyst Center template id: the read-only commands
//! to capture, the rules that must hold after the change, the template that undoes it), the
//! plan a change carries, and the per-device verdicts the checks produce.
//!
//! The rules are data; `changeflow_activities::checks` evaluates them against captured output.

use crate::arguments::{Arguments, BackoutPlan};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A rule that must hold on a device after a change (or after its back-out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Every command answered: the device is reachable.
    Reachable,
    /// Every line the template rendered appears in `show running-config`.
    RenderedLinesPresent,
    /// No interface that was up (`connected`) before the change is down after it
    /// (`show interfaces status`).
    InterfacesNotDown,
    /// After a back-out: every line the change added (rendered, absent before the change) is
    /// gone from `show running-config`. `interface ...` lines are exempt: IOS keeps interfaces.
    ChangeLinesRemoved,
    /// A command's output contains a text; `{{name}}` in the text is the change's parameter.
    OutputContains { command: String, text: String },
}

impl Rule {
    /// The rule's name as verdicts report it.
    pub fn name(&self) -> String {
        match self {
            Rule::Reachable => "reachable".into(),
            Rule::RenderedLinesPresent => "rendered_lines_present".into(),
            Rule::InterfacesNotDown => "interfaces_not_down".into(),
            Rule::ChangeLinesRemoved => "change_lines_removed".into(),
            Rule::OutputContains { command, text } => {
                format!("output_contains({command:?}, {text:?})")
            }
        }
    }
}

/// The command rules about the running configuration read.
pub const RUNNING_CONFIG: &str = "show running-config";
/// The command the interface rule reads.
pub const INTERFACES: &str = "show interfaces status";

/// What a template's checks capture and require.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckPlan {
    /// Read-only commands captured before and after the change.
    pub commands: Vec<String>,
    /// Rules that must hold after the change.
    pub rules: Vec<Rule>,
}

impl Default for CheckPlan {
    /// When a template declares nothing: rendered lines present, interfaces and reachability
    /// unchanged.
    fn default() -> Self {
        CheckPlan {
            commands: vec![RUNNING_CONFIG.into(), INTERFACES.into()],
            rules: vec![
                Rule::Reachable,
                Rule::RenderedLinesPresent,
                Rule::InterfacesNotDown,
            ],
        }
    }
}

impl CheckPlan {
    /// The commands a back-out is checked with, and its rules: the device answers, the
    /// change's lines are gone, and no interface that was up before the change is down.
    pub fn for_backout(&self) -> CheckPlan {
        let mut commands = self.commands.clone();
        for needed in [RUNNING_CONFIG, INTERFACES] {
            if !commands.iter().any(|c| c == needed) {
                commands.push(needed.into());
            }
        }
        CheckPlan {
            commands,
            rules: vec![
                Rule::Reachable,
                Rule::ChangeLinesRemoved,
                Rule::InterfacesNotDown,
            ],
        }
    }

    /// Commands outside the read-only set, or rules reading a command the plan does not capture.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .commands
            .iter()
            .filter_map(|c| crate::limits::read_only_command(c).err())
            .collect();
        for rule in &self.rules {
            let needs = match rule {
                Rule::RenderedLinesPresent | Rule::ChangeLinesRemoved => Some(RUNNING_CONFIG),
                Rule::InterfacesNotDown => Some(INTERFACES),
                Rule::OutputContains { command, .. } => Some(command.as_str()),
                Rule::Reachable => None,
            };
            if let Some(command) = needs
                && !self.commands.iter().any(|c| c == command)
            {
                problems.push(format!(
                    "rule {} reads \"{command}\", which the plan does not capture",
                    rule.name()
                ));
            }
        }
        problems
    }
}

/// What the catalog says about one template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateVerification {
    /// The template's name, for people reading the catalog.
    #[serde(default)]
    pub name: String,
    /// The commands its checks capture; the catalog's defaults when absent.
    #[serde(default)]
    pub commands: Option<Vec<String>>,
    /// The rules that must hold after it; the catalog's defaults when absent.
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
    /// The template that undoes it (with the change's own parameters unless given).
    #[serde(default)]
    pub inverse: Option<BackoutPlan>,
}

/// The verification catalog: defaults and per-template declarations, by template id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub defaults: CheckPlan,
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateVerification>,
}

impl Catalog {
    /// Parses and checks a catalog (TOML).
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut problems: Vec<String> = catalog
            .defaults
            .problems()
            .into_iter()
            .map(|p| format!("defaults: {p}"))
            .collect();
        for (id, template) in &catalog.templates {
            let checks = catalog.checks_of(template);
            problems.extend(checks.problems().into_iter().map(|p| format!("{id}: {p}")));
            if let Some(inverse) = &template.inverse
                && let Err(e) = inverse.validate()
            {
                problems.push(format!("{id}: inverse: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems.join("; "))
        }
    }

    /// A template's checks: what it declares, the defaults for the rest.
    fn checks_of(&self, template: &TemplateVerification) -> CheckPlan {
        CheckPlan {
            commands: template
                .commands
                .clone()
                .unwrap_or_else(|| self.defaults.commands.clone()),
            rules: template
                .rules
                .clone()
                .unwrap_or_else(|| self.defaults.rules.clone()),
        }
    }

    /// The plan of a change deploying `template_id`: the template's checks (or the defaults),
    /// and the back-out the request names, else the template's declared inverse.
    pub fn plan(&self, template_id: &str, requested: Option<&BackoutPlan>) -> Verification {
        let declared = self.templates.get(template_id);
        let checks = declared.map_or_else(|| self.defaults.clone(), |t| self.checks_of(t));
        let (backout, backout_source) = match (requested, declared.and_then(|t| t.inverse.clone()))
        {
            (Some(plan), _) => (Some(plan.clone()), Some(BackoutSource::Request)),
            (None, Some(inverse)) => (Some(inverse), Some(BackoutSource::Inverse)),
            (None, None) => (None, None),
        };
        Verification {
            checks,
            backout,
            backout_source,
        }
    }
}

/// Where a change's back-out plan came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackoutSource {
    /// The request's `backout`.
    Request,
    /// The template's declared inverse.
    Inverse,
}

/// What a change checks and how it is undone, resolved when it is requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Verification {
    pub checks: CheckPlan,
    #[serde(default)]
    pub backout: Option<BackoutPlan>,
    #[serde(default)]
    pub backout_source: Option<BackoutSource>,
}

/// When a device was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckPhase {
    /// Before anything is deployed: the baseline.
    PreChange,
    /// After the deployment.
    PostChange,
    /// After a back-out.
    PostBackout,
}

impl CheckPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckPhase::PreChange => "pre_change",
            CheckPhase::PostChange => "post_change",
            CheckPhase::PostBackout => "post_backout",
        }
    }
}

/// Input of the check activity: capture `commands` on `devices`, store the outputs outside
/// history, and evaluate `rules` (against the `baseline` snapshots, for the rules comparing
/// before and after).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDevices {
    /// The change (workflow id), recorded with each snapshot.
    pub change_id: String,
    pub phase: CheckPhase,
    pub devices: Vec<crate::types::DeviceRef>,
    pub commands: Vec<String>,
    pub rules: Vec<Rule>,
    /// The change's rendered configuration and parameters (for the line and text rules).
    pub rendered: String,
    pub parameters: BTreeMap<String, String>,
    /// The pre-change snapshot of each device (by hostname), for the comparing rules.
    #[serde(default)]
    pub baseline: BTreeMap<String, String>,
}

/// A rule a device failed, with the lines that show it (a few, never the whole output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleFailure {
    pub rule: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

/// One device's check: the snapshot taken (a content hash; the outputs are stored outside
/// history) and whether every rule held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceCheck {
    pub device: String,
    pub phase: CheckPhase,
    pub passed: bool,
    /// `sha256:<hex>` of the stored snapshot (outputs of every command).
    pub snapshot: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<RuleFailure>,
}

impl DeviceCheck {
    /// "device: rule (detail)" for each failure, for messages and ticket notes.
    pub fn summary(&self) -> String {
        self.failures
            .iter()
            .map(|f| format!("{}: {} ({})", self.device, f.rule, f.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_parses_and_plans() {
        let catalog =
            Catalog::parse(include_str!("../../policy/verification.toml")).expect("catalog");
        let ntp = "4b45b32b-3c7b-5f23-b5d2-0cff8e17d75f";
        let plan = catalog.plan(ntp, None);
        assert_eq!(plan.backout_source, Some(BackoutSource::Inverse));
        assert!(
            plan.checks
                .commands
                .contains(&"show ntp associations".into())
        );
        let unknown = catalog.plan("no-such-template", None);
        assert_eq!(unknown.checks, catalog.defaults);
        assert_eq!(unknown.backout, None);
        let asked = BackoutPlan {
            template_id: "t".into(),
            parameters: None,
        };
        assert_eq!(
            catalog.plan(ntp, Some(&asked)).backout_source,
            Some(BackoutSource::Request)
        );
    }

    #[test]
    fn a_catalog_with_unsafe_commands_or_blind_rules_is_refused() {
        let err = Catalog::parse(
            "[defaults]\ncommands = [\"configure terminal\"]\nrules = [\"rendered_lines_present\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("configure terminal"), "{err}");
        assert!(err.contains("show running-config"), "{err}");
        let err = Catalog::parse("[templates.x]\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }
}
