//! Starting runs: the dashboard's chat (a session, history, the user's new message) and the
//! OpenAI-compatible API (the caller's messages, no session). Both end in the same
//! [`RunManager`](crate::runs::RunManager).

use std::sync::Arc;

use paas_agents::runtime::{self, Budget, Guardrails, RunSpec};
use paas_core::{Error, MessageId, Principal, RunId, SessionId};
use paas_llm::ChatMessage;
use paas_models::{Agent, Message, MessageRole, RunSource, TenantPlan};
use paas_persistence::runs::NewRun;
use paas_persistence::sessions::NewMessage;
use paas_persistence::{runs, sessions};
use paas_quota::RateOutcome;

use crate::runs::{LiveRun, Metering, RunRecord, RunStart};
use crate::services::agents as agent_service;
use crate::services::quota::{self, RunQuota};
use crate::state::AppState;

/// Longest message a user may send.
pub const MESSAGE_MAX_CHARS: usize = 32_000;
/// Most messages an OpenAI-compatible request may carry.
pub const MAX_MESSAGES: usize = 256;
/// History sent to the model with a new chat message (the most recent messages).
pub const HISTORY_LIMIT: usize = 200;
/// Identical tool calls allowed in one run.
pub const MAX_REPEATS: u32 = 2;

pub fn check_message(field: &str, text: &str) -> Result<(), Error> {
    if text.trim().is_empty() {
        return Err(Error::bad_request(
            "empty_message",
            format!("{field} must not be empty"),
        ));
    }
    if text.chars().count() > MESSAGE_MAX_CHARS {
        return Err(Error::bad_request(
            "message_too_long",
            format!("{field} must be at most {MESSAGE_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A dashboard chat turn.
#[derive(Debug)]
pub struct ChatInput {
    /// Agent id or name; optional when continuing a session.
    pub agent: Option<String>,
    pub message: String,
    pub session_id: Option<SessionId>,
}

/// A run that has started.
#[derive(Debug)]
pub struct Started {
    pub run: Arc<LiveRun>,
    pub agent: Agent,
}

fn spec_for(state: &AppState, agent: &Agent, max_tokens: u32, temperature: Option<f32>) -> RunSpec {
    RunSpec {
        budget: None,
        system_prompt: agent.system_prompt.clone(),
        model: agent.model.clone(),
        temperature,
        tools: agent.tools.clone(),
        limits: Guardrails {
            max_steps: agent.max_steps,
            max_tokens,
            timeout: std::time::Duration::from_secs(u64::from(agent.timeout_seconds)),
            tool_timeout: state.config.tool_timeout,
            max_repeats: MAX_REPEATS,
        },
    }
}

/// Turns stored messages into the model's history: the most recent [`HISTORY_LIMIT`], starting
/// at a user message so no tool result is separated from its call, and every tool call with a
/// result (see [`answer_every_tool_call`]).
fn history_of(messages: Vec<Message>) -> Vec<ChatMessage> {
    let start = messages.len().saturating_sub(HISTORY_LIMIT);
    let recent = &messages[start..];
    let first_user = recent
        .iter()
        .position(|m| m.role == MessageRole::User)
        .unwrap_or(recent.len());
    let history = recent[first_user..]
        .iter()
        .filter_map(|m| match m.role {
            MessageRole::User => Some(ChatMessage::user(m.content.clone())),
            MessageRole::Assistant => Some(ChatMessage::assistant_tool_calls(
                m.content.clone(),
                m.tool_calls
                    .iter()
                    .map(|c| paas_llm::ToolCall {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        arguments: c.arguments.clone(),
                    })
                    .collect(),
            )),
            MessageRole::Tool => Some(ChatMessage::tool_result(
                m.tool_call_id.clone().unwrap_or_default(),
                m.content.clone(),
            )),
            MessageRole::System => None,
        })
        .collect();
    answer_every_tool_call(history)
}

/// What the model is told of a tool call that has no stored result.
const UNANSWERED_TOOL_CALL: &str = "error: this tool call was not completed (the run ended before its result: a limit, a cancel or a failure)";

/// Gives every assistant tool call a result. A run that ended between a call and its result (a
/// guardrail, a cancel, a tool overrunning its time limit before the step's other calls ran)
/// stores the call without one, and providers refuse a history with such a call (OpenAI answers
/// 400): the next turn would fail. A missing result becomes an error result, after the ones
/// that were stored.
fn answer_every_tool_call(history: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(history.len());
    let mut unanswered: Vec<String> = Vec::new();
    let flush = |out: &mut Vec<ChatMessage>, unanswered: &mut Vec<String>| {
        for id in unanswered.drain(..) {
            out.push(ChatMessage::tool_result(id, UNANSWERED_TOOL_CALL));
        }
    };
    for message in history {
        match message.role {
            paas_llm::MessageRole::Tool => {
                if let Some(id) = &message.tool_call_id {
                    unanswered.retain(|pending| pending != id);
                }
            }
            _ => {
                flush(&mut out, &mut unanswered);
                unanswered.extend(message.tool_calls.iter().map(|c| c.id.clone()));
            }
        }
        out.push(message);
    }
    flush(&mut out, &mut unanswered);
    out
}

/// Starts a dashboard chat turn: finds the agent and session (creating the session with a title
/// from the message), stores the run and the user's message, and starts the run.
pub async fn start_chat(
    state: &AppState,
    principal: &Principal,
    plan: &TenantPlan,
    input: ChatInput,
    rate: &mut Option<RateOutcome>,
) -> Result<Started, Error> {
    check_message("message", &input.message)?;
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    let session = match input.session_id {
        Some(id) => Some(crate::services::sessions::get(state, principal, id).await?),
        None => None,
    };
    let agent = match (&input.agent, &session) {
        (Some(key), Some(session)) => {
            let agent = agent_service::find(state, principal, key).await?;
            if agent.id != session.agent_id {
                return Err(Error::bad_request(
                    "session_agent_mismatch",
                    "this session belongs to another agent; omit agent or start a new session",
                ));
            }
            agent
        }
        (Some(key), None) => agent_service::find(state, principal, key).await?,
        (None, Some(session)) => agent_service::get(state, principal, session.agent_id)
            .await
            .map_err(|_| Error::not_found("agent"))?,
        (None, None) => return Err(Error::validation("agent", "give an agent (its id or name)")),
    };
    let (provider, provider_kind) = state
        .providers
        .resolve(state, tenant, agent.provider_id)
        .await?;
    let run_id = RunId::new();
    let session_id = session.as_ref().map(|s| s.id).unwrap_or_default();
    let new_session = session.is_none();
    let earlier = if new_session {
        Vec::new()
    } else {
        state
            .db
            .tenant_tx(tenant, move |conn| {
                sessions::list_messages(conn, tenant, session_id, None)
            })
            .await?
    };
    let mut history = history_of(earlier);
    history.push(ChatMessage::user(input.message.clone()));
    let spec = spec_for(state, &agent, agent.max_tokens, agent.temperature);
    let amount = runtime::first_call_reservation(state.runs.tools(), &spec, &history);
    let run_quota =
        quota::admit_run(state, principal, plan, run_id, amount, rate, provider_kind).await?;
    let now = run_quota.started_at;
    let title = paas_models::chat::title_from(&input.message);
    let user_message = NewMessage {
        id: MessageId::new(),
        session_id,
        run_id: Some(run_id),
        role: MessageRole::User,
        content: input.message.clone(),
        reasoning: String::new(),
        tool_calls: Vec::new(),
        tool_call_id: None,
        tool_name: None,
        is_error: false,
        prompt_tokens: 0,
        completion_tokens: 0,
        created_at: now,
    };
    let run_row = NewRun {
        id: run_id,
        tenant_id: tenant,
        session_id: Some(session_id),
        user_id: user,
        api_key_id: principal.api_key_id(),
        agent_id: agent.id,
        source: RunSource::Chat,
        provider: provider_kind.to_owned(),
        model: agent.model.clone(),
        started_at: now,
        lease: state.runs.lease(),
    };
    let agent_id = agent.id;
    let sessions_per_day = plan.limits().max_sessions_per_day;
    let stored = state
        .db
        .tenant_tx(tenant, move |conn| {
            if new_session {
                quota::count_new_session(conn, tenant, now, sessions_per_day)?;
                sessions::insert(conn, tenant, session_id, user, agent_id, &title, now)?;
            }
            runs::insert(conn, &run_row)?;
            sessions::insert_messages(conn, tenant, std::slice::from_ref(&user_message))?;
            sessions::touch(conn, tenant, session_id, now)?;
            Ok(())
        })
        .await;
    if let Err(err) = stored {
        release(state, tenant, run_id, &run_quota).await;
        return Err(err);
    }
    let launch = Launch {
        run_id,
        session_id: Some(session_id),
        source: RunSource::Chat,
        provider,
        provider_kind,
        amount,
        run_quota,
        mirror: true,
        record: RunRecord::Stored,
    };
    Ok(launch.start(state, principal, agent, spec, history))
}

/// A run that is admitted and stored, ready to start.
struct Launch {
    run_id: RunId,
    session_id: Option<SessionId>,
    source: RunSource,
    provider: Arc<dyn paas_llm::Provider>,
    provider_kind: &'static str,
    /// Tokens reserved at admission (the first model call's worst case).
    amount: u64,
    run_quota: RunQuota,
    /// See [`RunStart::mirror`].
    mirror: bool,
    /// See [`RunStart::record`].
    record: RunRecord,
}

impl Launch {
    /// Starts the run with its token budget (later model calls reserve more) and its metering.
    fn start(
        self,
        state: &AppState,
        principal: &Principal,
        agent: Agent,
        mut spec: RunSpec,
        history: Vec<ChatMessage>,
    ) -> Started {
        let tenant = principal.tenant_id;
        spec.budget = Some(Budget {
            granted: self.amount,
            source: quota::budget(state, tenant, self.run_id, &self.run_quota),
        });
        let metering = Metering {
            quota: self.run_quota,
            api_key_id: principal.api_key_id(),
            agent_id: agent.id,
            source: self.source,
            provider: self.provider_kind.to_owned(),
            model: agent.model.clone(),
        };
        let run = state.runs.start(RunStart {
            id: self.run_id,
            tenant_id: tenant,
            user_id: principal.user_id,
            session_id: self.session_id,
            provider: self.provider,
            spec,
            history,
            metering,
            mirror: self.mirror,
            record: self.record,
        });
        Started { run, agent }
    }
}

/// Gives back the reservation of a run that could not be stored (so never started).
async fn release(state: &AppState, tenant: paas_core::TenantId, run: RunId, run_quota: &RunQuota) {
    if let Err(err) = quota::settle(&state.quotas, tenant, run, run_quota, 0).await {
        tracing::warn!(run = %run, error = %err.cause_chain(), "could not release a reservation; it expires on its own");
    }
}

/// An OpenAI-compatible request, already parsed.
#[derive(Debug)]
pub struct OpenAiInput {
    pub messages: Vec<ChatMessage>,
    /// The answer streams (and a retry may follow the run's events): see [`RunStart::mirror`].
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

/// Starts a run for the OpenAI-compatible API: the agent's system prompt first, then the
/// caller's messages. No session is stored; the run (and its usage) is.
pub async fn start_openai(
    state: &AppState,
    principal: &Principal,
    plan: &TenantPlan,
    agent: Agent,
    input: OpenAiInput,
    rate: &mut Option<RateOutcome>,
) -> Result<Started, Error> {
    let tenant = principal.tenant_id;
    let (provider, provider_kind) = state
        .providers
        .resolve(state, tenant, agent.provider_id)
        .await?;
    let run_id = RunId::new();
    let max_tokens = input
        .max_tokens
        .map_or(agent.max_tokens, |m| m.min(agent.max_tokens));
    let temperature = input.temperature.or(agent.temperature);
    let spec = spec_for(state, &agent, max_tokens, temperature);
    let amount = runtime::first_call_reservation(state.runs.tools(), &spec, &input.messages);
    let run_quota =
        quota::admit_run(state, principal, plan, run_id, amount, rate, provider_kind).await?;
    let run_row = NewRun {
        id: run_id,
        tenant_id: tenant,
        session_id: None,
        user_id: principal.user_id,
        api_key_id: principal.api_key_id(),
        agent_id: agent.id,
        source: RunSource::Openai,
        provider: provider_kind.to_owned(),
        model: agent.model.clone(),
        started_at: run_quota.started_at,
        lease: state.runs.lease(),
    };
    // No database write on the request's path: the row is written behind the run.
    let record = if state.config.record_openai_runs {
        RunRecord::Deferred(run_row)
    } else {
        RunRecord::Off
    };
    let launch = Launch {
        run_id,
        session_id: None,
        source: RunSource::Openai,
        provider,
        provider_kind,
        amount,
        run_quota,
        mirror: input.stream,
        record,
    };
    Ok(launch.start(state, principal, agent, spec, input.messages))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use paas_llm::{ChatMessage, MessageRole, ToolCall};

    use super::{UNANSWERED_TOOL_CALL, answer_every_tool_call};

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "calculator".into(),
            arguments: "{}".into(),
        }
    }

    fn shape(history: &[ChatMessage]) -> Vec<(MessageRole, Option<String>)> {
        history
            .iter()
            .map(|m| (m.role, m.tool_call_id.clone()))
            .collect()
    }

    #[test]
    fn a_tool_call_without_a_result_gets_an_error_result_before_the_next_message() {
        let history = vec![
            ChatMessage::user("what is 1+1 and 2+2?"),
            // The run ended after the first call's result (the second tool timed out, say).
            ChatMessage::assistant_tool_calls("", vec![call("a"), call("b")]),
            ChatMessage::tool_result("a", "2"),
            ChatMessage::user("and 3+3?"),
            // The run ended before any result (a cancel).
            ChatMessage::assistant_tool_calls("", vec![call("c")]),
        ];
        let answered = answer_every_tool_call(history);
        assert_eq!(
            shape(&answered),
            [
                (MessageRole::User, None),
                (MessageRole::Assistant, None),
                (MessageRole::Tool, Some("a".into())),
                (MessageRole::Tool, Some("b".into())),
                (MessageRole::User, None),
                (MessageRole::Assistant, None),
                (MessageRole::Tool, Some("c".into())),
            ]
        );
        assert_eq!(answered[2].content, "2");
        assert_eq!(answered[3].content, UNANSWERED_TOOL_CALL);
        assert_eq!(answered[6].content, UNANSWERED_TOOL_CALL);
    }

    #[test]
    fn a_complete_history_is_left_as_it_is() {
        let history = vec![
            ChatMessage::user("what is 1+1?"),
            ChatMessage::assistant_tool_calls("", vec![call("a")]),
            ChatMessage::tool_result("a", "2"),
            ChatMessage::assistant_tool_calls("It is 2.", Vec::new()),
        ];
        let answered = answer_every_tool_call(history.clone());
        assert_eq!(shape(&answered), shape(&history));
        assert_eq!(answered.len(), 4);
    }
}
