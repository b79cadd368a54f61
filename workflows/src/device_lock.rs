//! `DeviceLock`: one device held by one change. Its workflow id (`device-lock-<device>`) is the
//! lock: Temporal runs at most one workflow per id, so starting it is taking the device, and
//! that holds across worker and front-door restarts. A change starts it as a child (parent-close
//! policy Terminate: a lock never outlives its change) and signals `release` once its
//! deployment has ended. A change that finds the device held signals `wait`; the lock tells it
//! who holds the device, and tells every waiter when it is released.

use crate::template_deployment::TemplateDeployment;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    SignalWorkflowOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView,
    WorkflowResult,
};

/// The change that holds a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
pub struct LockHolder {
    pub change_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
}

/// The lock's input: which device, held by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRequest {
    pub device: String,
    pub holder: LockHolder,
}

/// What a lock tells a change waiting for its device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockNews {
    pub device: String,
    pub holder: LockHolder,
    /// The device is free: try again.
    pub released: bool,
}

/// The workflow id of a device's lock.
pub fn lock_id(device: &str) -> String {
    format!("device-lock-{device}")
}

#[workflow]
pub struct DeviceLock {
    request: LockRequest,
    released: bool,
    /// Changes waiting for the device, in the order they asked.
    waiting: Vec<String>,
}

#[workflow_methods]
impl DeviceLock {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, request: LockRequest) -> Self {
        Self {
            request,
            released: false,
            waiting: Vec::new(),
        }
    }

    /// Holds the device until released (or cancelled with its change), answering waiters.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        let mut told = 0;
        loop {
            let woke = ctx
                .wait_condition(|s: &Self| s.released || s.waiting.len() > told)
                .await;
            let (waiting, released, request) =
                ctx.state(|s| (s.waiting.clone(), s.released, s.request.clone()));
            let released = released || woke.is_err();
            let news = |released: bool| LockNews {
                device: request.device.clone(),
                holder: request.holder.clone(),
                released,
            };
            let tell: Vec<String> = if released {
                waiting.clone()
            } else {
                waiting[told..].to_vec()
            };
            for change in tell {
                // A waiter that has ended meanwhile cannot be told; nothing to do about it.
                let _ = ctx
                    .external_workflow(change, None)
                    .signal(
                        TemplateDeployment::device_news,
                        news(released),
                        SignalWorkflowOptions::default(),
                    )
                    .await;
            }
            told = waiting.len();
            if released {
                return Ok(());
            }
        }
    }

    /// The holder is done with the device.
    #[signal]
    pub fn release(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _nothing: ()) {
        self.released = true;
    }

    /// A change waits for the device: tell it who holds it now, and when it is released.
    #[signal]
    pub fn wait(&mut self, _ctx: &mut SyncWorkflowContext<Self>, change_id: String) {
        if !self.waiting.contains(&change_id) {
            self.waiting.push(change_id);
        }
    }

    /// Who holds the device.
    #[query]
    pub fn holder(&self, _ctx: &WorkflowContextView) -> LockHolder {
        self.request.holder.clone()
    }
}
