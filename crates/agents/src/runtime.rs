//! The tool-calling loop.
//!
//! A run sends the conversation to the model, streams what it says as [`RunEvent`]s, executes
//! the tools it calls, feeds their results back, and repeats until the model answers without
//! calling a tool — or a guardrail stops it:
//!
//! - `max_steps`: model calls per run;
//! - `max_tokens`: completion tokens per run (each call may use what is left);
//! - `timeout`: wall-clock time of the whole run;
//! - `tool_timeout`: time of one tool call (an overrun ends the run; the timed-out call keeps
//!   an error result in the transcript, so every stored tool call has its result);
//! - `repeated_tool_call`: the same tool with the same arguments more than `max_repeats` times;
//! - `token_quota`: the tenant's monthly tokens have no room for the next model call. A run
//!   starts with a reservation covering its first call (prompt estimate + `max_tokens`); each
//!   later call that would go beyond it reserves the difference first through the
//!   [`TokenBudget`], so a run never spends tokens its tenant has not reserved.
//!
//! Hitting one ends the run with a `limit` event naming it. The run's transcript (assistant and
//! tool messages, including a partial answer cut by an error or a limit) and its usage are
//! returned for the caller to store and bill.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use paas_llm::{
    ChatMessage, ChatRequest, FinishReason, LlmError, Provider, StreamEvent, ToolCall, Usage,
};
use paas_models::RunStatus;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::tools::ToolRegistry;

/// What the agent is, as far as one run is concerned.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub system_prompt: String,
    pub model: String,
    pub temperature: Option<f32>,
    /// Tools the agent may call (names of built-in tools).
    pub tools: Vec<String>,
    pub limits: Guardrails,
    /// The tokens reserved for the run and where to ask for more (`None`: not metered).
    pub budget: Option<Budget>,
}

/// Reserves more of the tenant's tokens for a run in progress.
pub trait TokenBudget: Send + Sync + std::fmt::Debug {
    /// Reserves `tokens` more; `false` when the quota has no room for them.
    fn reserve(&self, tokens: u64) -> futures_util::future::BoxFuture<'_, bool>;
}

/// A run's token reservation.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Tokens reserved so far (prompt and completion together).
    pub granted: u64,
    pub source: Arc<dyn TokenBudget>,
}

/// The limits of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guardrails {
    pub max_steps: u32,
    pub max_tokens: u32,
    pub timeout: Duration,
    pub tool_timeout: Duration,
    /// Identical tool calls (same tool, same arguments) allowed per run.
    pub max_repeats: u32,
}

/// Which guardrail ended a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitReason {
    MaxSteps,
    MaxTokens,
    Timeout,
    ToolTimeout,
    RepeatedToolCall,
    TokenQuota,
}

impl LimitReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitReason::MaxSteps => "max_steps",
            LimitReason::MaxTokens => "max_tokens",
            LimitReason::Timeout => "timeout",
            LimitReason::ToolTimeout => "tool_timeout",
            LimitReason::RepeatedToolCall => "repeated_tool_call",
            LimitReason::TokenQuota => "token_quota",
        }
    }

    fn message(self, limits: &Guardrails) -> String {
        match self {
            LimitReason::MaxSteps => {
                format!(
                    "the agent reached its limit of {} model calls for one run",
                    limits.max_steps
                )
            }
            LimitReason::MaxTokens => {
                format!(
                    "the agent reached its limit of {} output tokens for one run",
                    limits.max_tokens
                )
            }
            LimitReason::Timeout => {
                format!(
                    "the run exceeded its time limit of {} s",
                    limits.timeout.as_secs()
                )
            }
            LimitReason::ToolTimeout => format!(
                "a tool call exceeded its time limit of {} s",
                limits.tool_timeout.as_secs_f32()
            ),
            LimitReason::RepeatedToolCall => format!(
                "the agent called the same tool with the same arguments more than {} times",
                limits.max_repeats
            ),
            LimitReason::TokenQuota => "the tenant's monthly token quota has no room for the next \
                 model call; a platform operator can raise it (a larger plan or a quota override)"
                .to_owned(),
        }
    }
}

/// Tokens used so far in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub estimated: bool,
}

impl From<Usage> for UsageTotals {
    fn from(usage: Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total(),
            estimated: usage.estimated,
        }
    }
}

/// What a run tells its watchers, in order. Serialised as the chat protocol's
/// `{"event": "...", "data": ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum RunEvent {
    /// A piece of the answer.
    Message(String),
    /// A piece of the model's reasoning or plan.
    Thought(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    ToolResult {
        id: String,
        name: String,
        content: String,
        is_error: bool,
    },
    /// The run's usage so far (after each model call).
    Usage(UsageTotals),
    Limit {
        reason: LimitReason,
        message: String,
    },
    Error {
        code: String,
        message: String,
    },
    Done {
        status: RunStatus,
        usage: UsageTotals,
        steps: u32,
    },
}

/// A message the run produced, with what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct TranscriptEntry {
    pub message: ChatMessage,
    pub reasoning: String,
    /// Tool messages: the tool's name and whether it failed.
    pub tool_name: Option<String>,
    pub is_error: bool,
    pub usage: Usage,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    pub status: RunStatus,
    pub steps: u32,
    pub usage: Usage,
    pub transcript: Vec<TranscriptEntry>,
    pub error: Option<(String, String)>,
    pub limit: Option<LimitReason>,
}

/// Why the loop stopped early.
enum Stop {
    Limit(LimitReason),
    Failed(String, String),
    Cancelled,
}

/// Runs an agent over `history` (the conversation so far, without the system prompt), sending
/// events to `events` as they happen. A closed `events` receiver does not stop the run: runs
/// outlive their watchers.
pub async fn run(
    provider: Arc<dyn Provider>,
    tools: &ToolRegistry,
    spec: &RunSpec,
    history: Vec<ChatMessage>,
    cancel: CancellationToken,
    events: mpsc::UnboundedSender<RunEvent>,
) -> RunResult {
    let limits = spec.limits;
    let deadline = Instant::now() + limits.timeout;
    let emit = |event: RunEvent| {
        let _ = events.send(event);
    };
    let mut messages = Vec::with_capacity(history.len() + 1);
    if !spec.system_prompt.is_empty() {
        messages.push(ChatMessage::system(spec.system_prompt.clone()));
    }
    messages.extend(history);
    let tool_specs = tools.specs(&spec.tools);

    let mut usage = Usage::default();
    let mut steps = 0u32;
    let mut transcript = Vec::new();
    let mut repeats: HashMap<(String, String), u32> = HashMap::new();
    let mut granted = spec.budget.as_ref().map(|b| b.granted);

    let stop = loop {
        if steps >= limits.max_steps {
            break Some(Stop::Limit(LimitReason::MaxSteps));
        }
        let remaining = limits.max_tokens.saturating_sub(usage.completion_tokens);
        if remaining == 0 {
            break Some(Stop::Limit(LimitReason::MaxTokens));
        }
        let request = ChatRequest {
            model: spec.model.clone(),
            messages: messages.clone(),
            tools: tool_specs.clone(),
            temperature: spec.temperature,
            max_tokens: Some(remaining),
        };
        if let (Some(budget), Some(held)) = (&spec.budget, granted.as_mut()) {
            let needed = usage_total(&usage) + call_worst_case(&request);
            if needed > *held {
                if budget.source.reserve(needed - *held).await {
                    *held = needed;
                } else {
                    break Some(Stop::Limit(LimitReason::TokenQuota));
                }
            }
        }
        steps += 1;
        // One span per model call, with the GenAI semantic conventions' attributes.
        let span = tracing::info_span!(
            "gen_ai.chat",
            otel.name = %format!("chat {}", spec.model),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.system = provider.kind(),
            gen_ai.request.model = %spec.model,
            gen_ai.request.max_tokens = remaining,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
        );
        let step = call_model(&provider, request, deadline, &cancel, &emit)
            .instrument(span.clone())
            .await;
        span.record("gen_ai.usage.input_tokens", step.usage.prompt_tokens);
        span.record("gen_ai.usage.output_tokens", step.usage.completion_tokens);
        usage.add(step.usage);
        emit(RunEvent::Usage(usage.into()));
        let assistant = ChatMessage::assistant_tool_calls(step.text.clone(), step.calls.clone());
        let answered =
            !step.text.is_empty() || !step.calls.is_empty() || !step.reasoning.is_empty();
        if answered {
            transcript.push(TranscriptEntry {
                message: assistant.clone(),
                reasoning: step.reasoning.clone(),
                tool_name: None,
                is_error: false,
                usage: step.usage,
            });
        }
        match step.outcome {
            StepOutcome::Finished(FinishReason::Length) => {
                break Some(Stop::Limit(LimitReason::MaxTokens));
            }
            StepOutcome::Finished(_) => {}
            StepOutcome::Failed(err) => {
                break Some(Stop::Failed(err.code().to_owned(), err.client_message()));
            }
            StepOutcome::Cancelled => break Some(Stop::Cancelled),
            StepOutcome::TimedOut => break Some(Stop::Limit(LimitReason::Timeout)),
        }
        if step.calls.is_empty() {
            break None;
        }
        messages.push(assistant);

        let mut stopped = None;
        for call in step.calls {
            let key = (call.name.clone(), canonical_arguments(&call.arguments));
            let seen = repeats.entry(key).or_insert(0);
            *seen += 1;
            if *seen > limits.max_repeats {
                stopped = Some(Stop::Limit(LimitReason::RepeatedToolCall));
                break;
            }
            emit(RunEvent::ToolCall {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            let tool_span = tracing::info_span!(
                "gen_ai.execute_tool",
                otel.name = %format!("execute_tool {}", call.name),
                gen_ai.operation.name = "execute_tool",
                gen_ai.tool.name = %call.name,
                gen_ai.tool.call.id = %call.id,
            );
            let (content, is_error) =
                match execute(tools, spec, &call, limits.tool_timeout, deadline, &cancel)
                    .instrument(tool_span)
                    .await
                {
                    ToolOutcome::Done(content, is_error) => (content, is_error),
                    ToolOutcome::Cancelled => {
                        stopped = Some(Stop::Cancelled);
                        break;
                    }
                    ToolOutcome::TimedOut => {
                        stopped = Some(Stop::Limit(LimitReason::Timeout));
                        break;
                    }
                    // The call's error result is still recorded (below), so the stored
                    // transcript pairs the call with a result; then the run ends.
                    ToolOutcome::ToolTimedOut(content) => {
                        stopped = Some(Stop::Limit(LimitReason::ToolTimeout));
                        (content, true)
                    }
                };
            emit(RunEvent::ToolResult {
                id: call.id.clone(),
                name: call.name.clone(),
                content: content.clone(),
                is_error,
            });
            let result = ChatMessage::tool_result(call.id.clone(), content);
            transcript.push(TranscriptEntry {
                message: result.clone(),
                reasoning: String::new(),
                tool_name: Some(call.name.clone()),
                is_error,
                usage: Usage::default(),
            });
            messages.push(result);
            if stopped.is_some() {
                break;
            }
        }
        if stopped.is_some() {
            break stopped;
        }
    };

    let (status, error, limit) = match stop {
        None => (RunStatus::Completed, None, None),
        Some(Stop::Limit(reason)) => {
            emit(RunEvent::Limit {
                reason,
                message: reason.message(&limits),
            });
            (RunStatus::Limited, None, Some(reason))
        }
        Some(Stop::Failed(code, message)) => {
            emit(RunEvent::Error {
                code: code.clone(),
                message: message.clone(),
            });
            (RunStatus::Failed, Some((code, message)), None)
        }
        Some(Stop::Cancelled) => (RunStatus::Cancelled, None, None),
    };
    emit(RunEvent::Done {
        status,
        usage: usage.into(),
        steps,
    });
    RunResult {
        status,
        steps,
        usage,
        transcript,
        error,
        limit,
    }
}

fn usage_total(usage: &Usage) -> u64 {
    u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens)
}

/// The most one model call can use: the prompt (estimated) and its `max_tokens`.
fn call_worst_case(request: &ChatRequest) -> u64 {
    u64::from(paas_llm::estimate_prompt_tokens(request))
        + u64::from(request.max_tokens.unwrap_or(0))
}

/// The tokens to reserve before a run starts: the worst case of its first model call, built
/// exactly as [`run`] will build it.
pub fn first_call_reservation(
    tools: &ToolRegistry,
    spec: &RunSpec,
    history: &[ChatMessage],
) -> u64 {
    let mut messages = Vec::with_capacity(history.len() + 1);
    if !spec.system_prompt.is_empty() {
        messages.push(ChatMessage::system(spec.system_prompt.clone()));
    }
    messages.extend_from_slice(history);
    call_worst_case(&ChatRequest {
        model: spec.model.clone(),
        messages,
        tools: tools.specs(&spec.tools),
        temperature: spec.temperature,
        max_tokens: Some(spec.limits.max_tokens),
    })
}

enum StepOutcome {
    Finished(FinishReason),
    Failed(LlmError),
    Cancelled,
    TimedOut,
}

struct Step {
    text: String,
    reasoning: String,
    calls: Vec<ToolCall>,
    usage: Usage,
    outcome: StepOutcome,
}

/// One model call, streamed. Whatever arrived before a failure, cancellation or timeout is
/// kept (and its usage estimated if the provider never reported it).
async fn call_model(
    provider: &Arc<dyn Provider>,
    request: ChatRequest,
    deadline: Instant,
    cancel: &CancellationToken,
    emit: &impl Fn(RunEvent),
) -> Step {
    let prompt_estimate = paas_llm::estimate_prompt_tokens(&request);
    let mut step = Step {
        text: String::new(),
        reasoning: String::new(),
        calls: Vec::new(),
        usage: Usage::default(),
        outcome: StepOutcome::Finished(FinishReason::Other),
    };
    let mut reported = false;
    let upstream = provider.kind();
    let called = Instant::now();
    let opened = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(StepOutcome::Cancelled),
        () = tokio::time::sleep_until(deadline) => Err(StepOutcome::TimedOut),
        opened = provider.stream(request) => opened.map_err(StepOutcome::Failed),
    };
    match opened {
        Err(outcome) => step.outcome = outcome,
        Ok(mut stream) => loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => { step.outcome = StepOutcome::Cancelled; break; }
                () = tokio::time::sleep_until(deadline) => { step.outcome = StepOutcome::TimedOut; break; }
                next = stream.next() => next,
            };
            match next {
                None => break,
                Some(Err(err)) => {
                    step.outcome = StepOutcome::Failed(err);
                    break;
                }
                Some(Ok(event)) => match event {
                    StreamEvent::Text(delta) => {
                        step.text.push_str(&delta);
                        emit(RunEvent::Message(delta));
                    }
                    StreamEvent::Reasoning(delta) => {
                        step.reasoning.push_str(&delta);
                        emit(RunEvent::Thought(delta));
                    }
                    StreamEvent::ToolCall(call) => step.calls.push(call),
                    StreamEvent::Usage(usage) => {
                        step.usage = usage;
                        reported = true;
                    }
                    StreamEvent::Finish(reason) => step.outcome = StepOutcome::Finished(reason),
                },
            }
        },
    }
    metrics::histogram!("upstream_request_duration_seconds", "provider" => upstream)
        .record(called.elapsed().as_secs_f64());
    if let StepOutcome::Failed(err) = &step.outcome {
        metrics::counter!("upstream_errors_total", "provider" => upstream, "code" => err.code().to_owned())
            .increment(1);
    }
    if !reported {
        // Billed even when cut short: what was sent, and what came back.
        let produced = paas_llm::estimate_tokens(&step.text)
            + paas_llm::estimate_tokens(&step.reasoning)
            + step
                .calls
                .iter()
                .map(|c| paas_llm::estimate_tokens(&c.arguments))
                .sum::<u32>();
        let sent = !matches!(step.outcome, StepOutcome::Failed(_)) || produced > 0;
        step.usage = Usage {
            prompt_tokens: if sent { prompt_estimate } else { 0 },
            completion_tokens: produced,
            estimated: true,
        };
    }
    if matches!(
        step.outcome,
        StepOutcome::Failed(_) | StepOutcome::Cancelled | StepOutcome::TimedOut
    ) {
        // Tool calls from an interrupted step are never executed.
        step.calls.clear();
    }
    step
}

enum ToolOutcome {
    Done(String, bool),
    Cancelled,
    /// The run's wall-clock deadline passed.
    TimedOut,
    /// The tool overran its own time limit; the error result for the model.
    ToolTimedOut(String),
}

async fn execute(
    tools: &ToolRegistry,
    spec: &RunSpec,
    call: &ToolCall,
    tool_timeout: Duration,
    deadline: Instant,
    cancel: &CancellationToken,
) -> ToolOutcome {
    let tool = match tools.get(&call.name) {
        Some(tool) if spec.tools.contains(&call.name) => tool,
        _ => {
            return ToolOutcome::Done(
                format!("error: this agent has no tool named {:?}", call.name),
                true,
            );
        }
    };
    let arguments = if call.arguments.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        match serde_json::from_str::<serde_json::Value>(&call.arguments) {
            Ok(value) => value,
            Err(err) => {
                return ToolOutcome::Done(
                    format!("error: the arguments are not valid JSON ({err})"),
                    true,
                );
            }
        }
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => ToolOutcome::Cancelled,
        () = tokio::time::sleep_until(deadline) => ToolOutcome::TimedOut,
        result = tokio::time::timeout(tool_timeout, tool.call(arguments)) => match result {
            Ok(Ok(output)) => ToolOutcome::Done(output, false),
            Ok(Err(err)) => ToolOutcome::Done(format!("error: {err}"), true),
            Err(_) => ToolOutcome::ToolTimedOut(format!(
                "error: the tool did not finish within {} s",
                tool_timeout.as_secs_f32()
            )),
        },
    }
}

/// Arguments compared for repetition: parsed and re-serialised when they are JSON, so spacing
/// and key order do not hide a repeat.
fn canonical_arguments(arguments: &str) -> String {
    serde_json::from_str::<serde_json::Value>(arguments)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| arguments.trim().to_owned())
}
