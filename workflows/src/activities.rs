//! Declarations of the activities the workflows call. Their implementations live in
//! `changeflow-activities`; keeping only signatures here keeps this crate free of I/O.
#![allow(unused_variables)]

use crate::types::*;
use temporalio_common::ActivityError;
use temporalio_macros::activity_definitions;

/// Activities that talk to ServiceNow and Catalyst Center.
pub struct ChangeActivities;

#[activity_definitions]
impl ChangeActivities {
    /// Resolves a Git source to the commit it names, with the pull request that merged it.
    #[activity(name = "resolve_template_source")]
    pub fn resolve_template_source(
        request: crate::github::ResolveTemplateSource,
    ) -> Result<crate::github::ResolvedSource, ActivityError> {
        unimplemented!()
    }

    /// Syncs a resolved Git source into Catalyst Center as a committed template version (or
    /// finds the version an earlier sync of the same commit made).
    #[activity(name = "sync_template")]
    pub fn sync_template(
        request: crate::github::SyncTemplate,
    ) -> Result<crate::github::SyncedTemplate, ActivityError> {
        unimplemented!()
    }

    /// Checks template, parameters and devices in Catalyst Center and renders a preview.
    #[activity(name = "validate_deployment")]
    pub fn validate_deployment(
        request: DeploymentRequest,
    ) -> Result<ValidatedDeployment, ActivityError> {
        unimplemented!()
    }

    /// Opens a normal change request in ServiceNow (or finds the one this workflow opened).
    #[activity(name = "open_change_ticket")]
    pub fn open_change_ticket(ticket: NewChangeTicket) -> Result<ChangeTicket, ActivityError> {
        unimplemented!()
    }

    /// Walks the change request along its type's state path up to a state.
    #[activity(name = "advance_ticket")]
    pub fn advance_ticket(advance: AdvanceTicket) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Who may still approve the change (its `requested` approval records).
    #[activity(name = "pending_approvers")]
    pub fn pending_approvers(ticket: ChangeTicket) -> Result<PendingApprovers, ActivityError> {
        unimplemented!()
    }

    /// Looks in ServiceNow every `poll_secs` (heartbeating) until the change's approval is
    /// decided there; returns the decisive approver's decision.
    #[activity(name = "await_approval")]
    pub fn await_approval(wait: AwaitApproval) -> Result<ApprovalDecision, ActivityError> {
        unimplemented!()
    }

    /// Writes an approver's decision to their approval record (with the comment) and a work
    /// note; returns the change's approval rollup afterwards.
    #[activity(name = "record_decision")]
    pub fn record_decision(record: RecordDecision) -> Result<ApprovalRollup, ActivityError> {
        unimplemented!()
    }

    /// Asks Catalyst Center to deploy the template; returns the asynchronous task.
    #[activity(name = "submit_deployment")]
    pub fn submit_deployment(
        deployment: SubmitDeployment,
    ) -> Result<DeploymentTask, ActivityError> {
        unimplemented!()
    }

    /// Polls the deployment task (heartbeating) until it ends or a device's status changes.
    #[activity(name = "await_deployment")]
    pub fn await_deployment(wait: AwaitDeployment) -> Result<DeploymentSnapshot, ActivityError> {
        unimplemented!()
    }

    /// Runs read-only commands on devices (Command Runner), stores the outputs outside history
    /// and evaluates the rules; returns each device's verdict and its snapshot's hash.
    #[activity(name = "check_devices")]
    pub fn check_devices(check: CheckDevices) -> Result<Vec<DeviceCheck>, ActivityError> {
        unimplemented!()
    }

    /// Runs one quick read or write of a tool call (see `operations`); returns its JSON result.
    #[activity(name = "perform_operation")]
    pub fn perform_operation(
        request: OperationRequest,
    ) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    /// Closes the change request as successful, unsuccessful or canceled, with notes.
    #[activity(name = "close_change_ticket")]
    pub fn close_change_ticket(close: CloseChangeTicket) -> Result<(), ActivityError> {
        unimplemented!()
    }
}

/// The activity marker types, for implementations to name with `#[activity(definition = ...)]`.
pub mod definitions {
    pub use super::change_activities::*;
}
