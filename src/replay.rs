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

/// Reads a history file: protobuf, proto-JSON (`temporal workflow show --output json`; the
/// Web UI's download, encoded or with decoded payloads, or a bare list of its events; the HTTP
/// API's `{"history": ...}`, payload shorthand included) or the SDK's JSON.
pub fn decode(bytes: &[u8]) -> anyhow::Result<History> {
    let json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    if !json {
        return History::decode(bytes).context("not a protobuf History");
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).context("not JSON (nor a protobuf History)")?;
    let descriptor = history_descriptor()?;
    let mut history = match value {
        serde_json::Value::Array(events) => serde_json::json!({ "events": events }),
        serde_json::Value::Object(mut wrapper) if wrapper.contains_key("history") => {
            wrapper.remove("history").unwrap_or_default()
        }
        other => other,
    };
    normalize(&mut history, &descriptor);
    let proto_json = DynamicMessage::deserialize_with_options(
        descriptor,
        history,
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

/// Rewrites the JSON forms Temporal's tools show people into canonical proto-JSON, guided by
/// the message descriptors: a `Payloads` given as a list of values (the HTTP API's payload
/// shorthand), and a `Payload` given as its value, or with decoded metadata and data (the Web
/// UI's "decoded" download), become `{metadata: {...base64}, data: base64}`; enum values in
/// the short PascalCase form (`WorkflowExecutionStarted`) become their full names.
fn normalize(value: &mut serde_json::Value, message: &MessageDescriptor) {
    use serde_json::Value;
    match message.full_name() {
        "temporal.api.common.v1.Payloads" => {
            if let Value::Array(items) = value {
                *value = serde_json::json!({ "payloads": std::mem::take(items) });
            }
            if let Some(Value::Array(items)) = value.get_mut("payloads") {
                items.iter_mut().for_each(normalize_payload);
            }
            return;
        }
        "temporal.api.common.v1.Payload" => return normalize_payload(value),
        _ => {}
    }
    let Value::Object(fields) = value else {
        return;
    };
    for (key, field_value) in fields.iter_mut() {
        let Some(field) = message
            .get_field_by_json_name(key)
            .or_else(|| message.get_field_by_name(key))
        else {
            continue;
        };
        let kind = if field.is_map() {
            match field.kind() {
                prost_reflect::Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other,
            }
        } else {
            field.kind()
        };
        let mut apply = |v: &mut Value| match &kind {
            prost_reflect::Kind::Message(inner) => normalize(v, inner),
            prost_reflect::Kind::Enum(e) => normalize_enum(v, e),
            _ => {}
        };
        match field_value {
            Value::Array(items) if field.is_list() => items.iter_mut().for_each(&mut apply),
            Value::Object(entries) if field.is_map() => entries.values_mut().for_each(&mut apply),
            single => apply(single),
        }
    }
}

fn normalize_enum(value: &mut serde_json::Value, descriptor: &prost_reflect::EnumDescriptor) {
    let Some(text) = value.as_str() else { return };
    if descriptor.get_value_by_name(text).is_some() {
        return;
    }
    // EVENT_TYPE_WORKFLOW_EXECUTION_STARTED (of EventType) is shown as WorkflowExecutionStarted.
    let pascal = |name: &str| -> String {
        name.split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_string() + &chars.as_str().to_ascii_lowercase()
                })
            })
            .collect()
    };
    let full = descriptor
        .values()
        .find(|v| pascal(v.name()).strip_prefix(descriptor.name()) == Some(text));
    if let Some(full) = full {
        *value = serde_json::Value::String(full.name().to_string());
    }
}

fn normalize_payload(value: &mut serde_json::Value) {
    use base64::Engine as _;
    use serde_json::Value;
    let base64 = base64::engine::general_purpose::STANDARD;
    let is_base64 = |v: &Value| v.as_str().is_some_and(|s| base64.decode(s).is_ok());
    let encoded = match &*value {
        Value::Object(fields)
            if fields
                .keys()
                .all(|k| matches!(k.as_str(), "metadata" | "data" | "externalPayloads"))
                && fields.contains_key("metadata") =>
        {
            let metadata_encoded = fields["metadata"]
                .as_object()
                .is_some_and(|m| m.values().all(is_base64));
            let data_encoded = fields.get("data").is_none_or(is_base64);
            if metadata_encoded && data_encoded {
                return;
            }
            // The Web UI's decoded download: metadata as text, data as its JSON value.
            let metadata: serde_json::Map<String, Value> = fields["metadata"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k, Value::String(base64.encode(text)))
                })
                .collect();
            let data = fields.get("data").cloned().unwrap_or(Value::Null);
            serde_json::json!({
                "metadata": metadata,
                "data": base64.encode(serde_json::to_vec(&data).unwrap_or_default()),
            })
        }
        // The HTTP API's shorthand: the payload is its JSON value.
        shorthand => serde_json::json!({
            "metadata": {"encoding": base64.encode("json/plain")},
            "data": base64.encode(serde_json::to_vec(shorthand).unwrap_or_default()),
        }),
    };
    *value = encoded;
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
    // The SDK's replay worker reads the history's workflow tasks with this and panics (in a
    // task of its own, the replay left waiting) when it cannot: ask first. Once, for the whole
    // history: the prefixes `locate` replays end at a workflow task start and then read as well.
    if let Err(e) = temporalio_sdk_core::replay::HistoryInfo::new_from_history(&history, None) {
        anyhow::bail!("the history is damaged: {}", shortened(&e.to_string()));
    }
    let options = with_workflows!(WorkflowReplayerOptions::new())
        .context("registering workflows")?
        .build();
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

/// How long one replay may take: a real history replays in well under a second. A backstop:
/// the one way a history was seen to hang a replay (an event of the wrong type where a
/// workflow task's end belongs, one flipped byte, which made the SDK's replay worker panic in
/// a task of its own) is refused before replaying.
pub const REPLAY_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Replays `events`; the failure's message, if the code does not match them.
async fn failure(
    replayer: &WorkflowReplayer,
    events: &[HistoryEvent],
) -> anyhow::Result<Option<String>> {
    let history = History {
        events: events.to_vec(),
    };
    let replayed = tokio::time::timeout(
        REPLAY_LIMIT,
        replayer.replay_workflow(WorkflowHistory::from(history)),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "the replay did not finish within {} s: the history is damaged or not one \
             workflow's whole history",
            REPLAY_LIMIT.as_secs()
        )
    })?;
    match replayed {
        Ok(()) => Ok(None),
        Err(WorkflowReplayError::Replay(failure)) => Ok(Some(match failure {
            WorkflowReplayFailure::Nondeterminism { message } => message,
            other => other.to_string(),
        })),
        Err(other) => Err(anyhow::anyhow!("replay failed: {other}")),
    }
}

/// `message` up to its first 300 characters (the SDK's message on a damaged history quotes
/// the whole offending event).
fn shortened(message: &str) -> String {
    const SHOWN: usize = 300;
    match message.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_string(),
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
