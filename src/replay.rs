//! Replaying a change: its recorded history run again against this binary's workflow code with
//! the Temporal SDK's `WorkflowReplayer`. A history replays cleanly when the code would make the
//! same decisions; a change to a workflow that running executions cannot survive shows up as
//! nondeterminism, with the event it diverged at.
//!
//! Histories are read as protobuf (`History` bytes), as proto-JSON (what
//! `temporal workflow show --output json` and `changeflow replay --export` write) or as the
//! SDK's own JSON (`WorkflowHistory::to_json`).

use anyhow::Context;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use temporalio_client::WorkflowHistory;
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::{History, HistoryEvent};
use temporalio_sdk::workflow_replayer::{
    WorkflowReplayError, WorkflowReplayFailure, WorkflowReplayer, WorkflowReplayerOptions,
};

/// The Temporal API's descriptor set, from `temporalio-protos`' build (see build.rs).
static DESCRIPTORS: &[u8] = include_bytes!(env!("CHANGEFLOW_TEMPORAL_DESCRIPTORS"));

fn history_descriptor() -> anyhow::Result<MessageDescriptor> {
    let pool = DescriptorPool::decode(DESCRIPTORS).context("Temporal descriptor set")?;
    pool.get_message_by_name("temporal.api.history.v1.History")
        .context("no temporal.api.history.v1.History in the descriptor set")
}

/// Reads a history file: protobuf, proto-JSON or the SDK's JSON.
pub fn decode(bytes: &[u8]) -> anyhow::Result<History> {
    let json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !json {
        return History::decode(bytes).context("not a protobuf History");
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let proto_json = DynamicMessage::deserialize_with_options(
        history_descriptor()?,
        &mut deserializer,
        &prost_reflect::DeserializeOptions::new().deny_unknown_fields(false),
    );
    match proto_json {
        Ok(message) => History::decode(message.encode_to_vec().as_slice())
            .context("proto-JSON history does not re-encode"),
        Err(proto_error) => serde_json::from_slice::<History>(bytes).map_err(|_| {
            anyhow::anyhow!("neither proto-JSON nor the SDK's history JSON: {proto_error}")
        }),
    }
}

/// A history as proto-JSON, the format `temporal workflow show --output json` writes.
pub fn to_proto_json(history: &History) -> anyhow::Result<Vec<u8>> {
    let message = DynamicMessage::decode(history_descriptor()?, history.encode_to_vec().as_slice())
        .context("history to dynamic message")?;
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::pretty(&mut out);
    message
        .serialize_with_options(
            &mut serializer,
            &prost_reflect::SerializeOptions::new().skip_default_fields(true),
        )
        .context("history to proto-JSON")?;
    out.push(b'\n');
    Ok(out)
}

/// What replaying one history showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The code makes the same decisions the history recorded.
    Deterministic { events: usize },
    /// It does not: how it diverged, as the SDK reports it, and the recorded event the code
    /// no longer matches (its id and type), when it can be located.
    Nondeterministic {
        events: usize,
        message: String,
        at: Option<(i64, String)>,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Deterministic { events } => {
                write!(f, "replayed {events} events, deterministic")
            }
            Verdict::Nondeterministic {
                events,
                message,
                at: Some((id, kind)),
            } => write!(
                f,
                "replayed {events} events: NONDETERMINISTIC at event {id} ({kind}): {message}"
            ),
            Verdict::Nondeterministic {
                events,
                message,
                at: None,
            } => write!(f, "replayed {events} events: NONDETERMINISTIC: {message}"),
        }
    }
}

/// Replays one history against this binary's workflows (on a `LocalSet`: the replay worker is
/// not `Send`).
pub async fn replay(history: History) -> anyhow::Result<Verdict> {
    let events = history.events.len();
    anyhow::ensure!(events > 0, "the history has no events");
    let mut options = WorkflowReplayerOptions::new().build();
    options
        .register_workflow::<changeflow_workflows::TemplateDeployment>()
        .and_then(|o| o.register_workflow::<changeflow_workflows::DownstreamOperation>())
        .and_then(|o| o.register_workflow::<changeflow_workflows::DeviceLock>())
        .context("registering workflows")?;
    #[cfg(feature = "dev")]
    options
        .register_workflow::<changeflow_workflows::ConformanceFixture>()
        .context("registering workflows")?;
    let replayer = WorkflowReplayer::new(options).context("creating the replayer")?;
    match failure(&replayer, &history.events).await? {
        None => Ok(Verdict::Deterministic { events }),
        Some(message) => Ok(Verdict::Nondeterministic {
            events,
            at: locate(&replayer, &history.events, &message).await?,
            message,
        }),
    }
}

/// Replays `events`; the failure's message, if the code does not match them.
async fn failure(
    replayer: &WorkflowReplayer,
    events: &[HistoryEvent],
) -> anyhow::Result<Option<String>> {
    let history = History {
        events: events.to_vec(),
    };
    match replayer
        .replay_workflow(WorkflowHistory::from(history))
        .await
    {
        Ok(()) => Ok(None),
        Err(WorkflowReplayError::Replay(failure)) => Ok(Some(match failure {
            WorkflowReplayFailure::Nondeterminism { message } => message,
            other => other.to_string(),
        })),
        Err(other) => Err(anyhow::anyhow!("replay failed: {other}")),
    }
}

/// The recorded event the code diverged at. The SDK's message names what differs but not
/// where, so the history is replayed in prefixes ending at a workflow task start (as a running
/// workflow's history ends) to find the first workflow task whose recorded commands the code
/// no longer makes; of that task's command events, the one the message names (or else the
/// first) is reported.
async fn locate(
    replayer: &WorkflowReplayer,
    events: &[HistoryEvent],
    message: &str,
) -> anyhow::Result<Option<(i64, String)>> {
    let starts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event_type == EventType::WorkflowTaskStarted as i32)
        .map(|(i, _)| i)
        .collect();
    // Binary search for the shortest failing prefix; the whole history fails.
    let (mut good, mut bad) = (0usize, events.len());
    let (mut low, mut high) = (0usize, starts.len());
    while low < high {
        let middle = (low + high) / 2;
        let end = starts[middle] + 1;
        if failure(replayer, &events[..end]).await?.is_some() {
            bad = end;
            high = middle;
        } else {
            good = end;
            low = middle + 1;
        }
    }
    // The command events recorded after the last workflow task that still replays.
    let from = events[..good]
        .iter()
        .rposition(|e| e.event_type == EventType::WorkflowTaskCompleted as i32)
        .unwrap_or(0);
    let workflow_task = [
        EventType::WorkflowTaskScheduled as i32,
        EventType::WorkflowTaskStarted as i32,
        EventType::WorkflowTaskCompleted as i32,
    ];
    let candidates: Vec<&HistoryEvent> = events[from..bad]
        .iter()
        .filter(|e| !workflow_task.contains(&e.event_type))
        .collect();
    let named = candidates.iter().find(|e| {
        event_names(e)
            .iter()
            .any(|name| !name.is_empty() && message.contains(&format!("'{name}'")))
    });
    Ok(named.or(candidates.first()).map(|e| {
        let kind = EventType::try_from(e.event_type)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| e.event_type.to_string());
        (e.event_id, kind)
    }))
}

/// The names a command event records (activity type and id, timer, child workflow, signal,
/// marker).
fn event_names(event: &HistoryEvent) -> Vec<String> {
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    match &event.attributes {
        Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => vec![
            a.activity_type
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            a.activity_id.clone(),
        ],
        Some(Attributes::TimerStartedEventAttributes(a)) => vec![a.timer_id.clone()],
        Some(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(a)) => vec![
            a.workflow_type
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            a.workflow_id.clone(),
        ],
        Some(Attributes::SignalExternalWorkflowExecutionInitiatedEventAttributes(a)) => {
            vec![a.signal_name.clone()]
        }
        Some(Attributes::MarkerRecordedEventAttributes(a)) => vec![a.marker_name.clone()],
        _ => Vec::new(),
    }
}

/// This binary's history tools for evidence bundles: proto-JSON both ways, and replay on a
/// thread of its own (the replay worker is not `Send`, and a request handler must be).
pub struct BinaryHistories;

#[async_trait::async_trait]
impl changeflow_mcp_frontend::evidence::Histories for BinaryHistories {
    fn to_proto_json(&self, history: &[u8]) -> Result<Vec<u8>, String> {
        let history = History::decode(history).map_err(|e| e.to_string())?;
        to_proto_json(&history).map_err(|e| format!("{e:#}"))
    }

    fn to_protobuf(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        decode(bytes)
            .map(|h| h.encode_to_vec())
            .map_err(|e| format!("{e:#}"))
    }

    async fn replay(
        &self,
        history: Vec<u8>,
    ) -> Result<changeflow_mcp_frontend::evidence::ReplayVerdict, String> {
        let history = History::decode(history.as_slice()).map_err(|e| e.to_string())?;
        let (send, receive) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let verdict = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|runtime| {
                    tokio::task::LocalSet::new()
                        .block_on(&runtime, replay(history))
                        .map_err(|e| format!("{e:#}"))
                });
            let _ = send.send(verdict);
        });
        let verdict = receive
            .await
            .map_err(|_| "the replay thread died".to_string())??;
        Ok(changeflow_mcp_frontend::evidence::ReplayVerdict {
            deterministic: matches!(verdict, Verdict::Deterministic { .. }),
            events: match &verdict {
                Verdict::Deterministic { events } | Verdict::Nondeterministic { events, .. } => {
                    *events
                }
            },
            verdict: verdict.to_string(),
        })
    }
}
