//! Chat sessions and their history. A session belongs to one user: nobody else — not even an
//! admin of the same tenant — can read it through these functions.

use paas_core::{AgentId, Error, Principal, SessionId};
use paas_models::{ChatSession, Message, MessageRole};
use paas_persistence::{Page, agents, sessions};

use crate::services::agents as agent_service;
use crate::state::AppState;

pub const TITLE_MAX: usize = 200;

pub async fn list(
    state: &AppState,
    principal: &Principal,
    query: Option<String>,
    agent: Option<AgentId>,
    page: Page,
) -> Result<Vec<ChatSession>, Error> {
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    if query
        .as_ref()
        .is_some_and(|q| q.chars().count() > TITLE_MAX)
    {
        return Err(Error::validation("q", "q must be at most 200 characters"));
    }
    state
        .db
        .tenant_tx(tenant, move |conn| {
            sessions::list(conn, tenant, user, query.as_deref(), agent, page)
        })
        .await
}

pub async fn get(
    state: &AppState,
    principal: &Principal,
    id: SessionId,
) -> Result<ChatSession, Error> {
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    state
        .db
        .tenant_tx(tenant, move |conn| sessions::get(conn, tenant, user, id))
        .await?
        .ok_or_else(|| Error::not_found("session"))
}

fn check_title(title: &str) -> Result<String, Error> {
    paas_models::validate::display_name("title", title, TITLE_MAX)
}

/// Creates an empty session with an agent (by id or name).
pub async fn create(
    state: &AppState,
    principal: &Principal,
    agent: &str,
    title: Option<String>,
) -> Result<ChatSession, Error> {
    let agent = agent_service::find(state, principal, agent).await?;
    let title = title
        .as_deref()
        .map(check_title)
        .transpose()?
        .unwrap_or_else(|| "New chat".to_owned());
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    let now = state.clock.now();
    state
        .db
        .tenant_tx(tenant, move |conn| {
            let limit = paas_persistence::quotas::plan(conn, tenant)?
                .limits()
                .max_sessions_per_day;
            crate::services::quota::count_new_session(conn, tenant, now, limit)?;
            sessions::insert(conn, tenant, SessionId::new(), user, agent.id, &title, now)
        })
        .await
}

pub async fn rename(
    state: &AppState,
    principal: &Principal,
    id: SessionId,
    title: &str,
) -> Result<ChatSession, Error> {
    let title = check_title(title)?;
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    let now = state.clock.now();
    state
        .db
        .tenant_tx(tenant, move |conn| {
            sessions::rename(conn, tenant, user, id, &title, now)
        })
        .await?
        .ok_or_else(|| Error::not_found("session"))
}

pub async fn delete(state: &AppState, principal: &Principal, id: SessionId) -> Result<(), Error> {
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    if state
        .db
        .tenant_tx(tenant, move |conn| sessions::delete(conn, tenant, user, id))
        .await?
    {
        Ok(())
    } else {
        Err(Error::not_found("session"))
    }
}

pub async fn messages(
    state: &AppState,
    principal: &Principal,
    id: SessionId,
    page: Page,
) -> Result<Vec<Message>, Error> {
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    state
        .db
        .tenant_tx(tenant, move |conn| {
            sessions::get(conn, tenant, user, id)?.ok_or_else(|| Error::not_found("session"))?;
            sessions::list_messages(conn, tenant, id, Some(page))
        })
        .await
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Markdown,
}

/// A whole session as a downloadable document: (content type, file extension, body).
pub async fn export(
    state: &AppState,
    principal: &Principal,
    id: SessionId,
    format: ExportFormat,
) -> Result<(&'static str, &'static str, String), Error> {
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    let (session, agent, messages) = state
        .db
        .tenant_tx(tenant, move |conn| {
            let session = sessions::get(conn, tenant, user, id)?
                .ok_or_else(|| Error::not_found("session"))?;
            let agent = agents::get_any(conn, tenant, session.agent_id)?;
            let messages = sessions::list_messages(conn, tenant, id, None)?;
            Ok((session, agent, messages))
        })
        .await?;
    match format {
        ExportFormat::Json => {
            let body =
                serde_json::json!({"session": session, "agent": agent, "messages": messages});
            Ok((
                "application/json",
                "json",
                serde_json::to_string_pretty(&body).map_err(Error::internal)?,
            ))
        }
        ExportFormat::Markdown => Ok((
            "text/markdown; charset=utf-8",
            "md",
            markdown(&session, agent.as_ref(), &messages),
        )),
    }
}

fn markdown(
    session: &ChatSession,
    agent: Option<&paas_models::Agent>,
    messages: &[Message],
) -> String {
    let mut out = format!("# {}\n\n", session.title);
    if let Some(agent) = agent {
        out.push_str(&format!(
            "Agent: **{}** (`{}`, model `{}`)  \n",
            agent.display_name, agent.name, agent.model
        ));
    }
    out.push_str(&format!(
        "Started: {}\n\n---\n\n",
        session.created_at.to_rfc3339()
    ));
    for message in messages {
        let when = message.created_at.format("%Y-%m-%d %H:%M:%S UTC");
        match message.role {
            MessageRole::User => {
                out.push_str(&format!("### You · {when}\n\n{}\n\n", message.content))
            }
            MessageRole::Assistant => {
                out.push_str(&format!("### Assistant · {when}\n\n"));
                if !message.reasoning.is_empty() {
                    out.push_str(&format!(
                        "<details><summary>Thoughts</summary>\n\n{}\n\n</details>\n\n",
                        message.reasoning
                    ));
                }
                if !message.content.is_empty() {
                    out.push_str(&format!("{}\n\n", message.content));
                }
                for call in &message.tool_calls {
                    out.push_str(&format!(
                        "> Tool call `{}`: `{}`\n\n",
                        call.name, call.arguments
                    ));
                }
            }
            MessageRole::Tool => {
                let name = message.tool_name.as_deref().unwrap_or("tool");
                let label = if message.is_error { "failed" } else { "result" };
                out.push_str(&format!("> Tool {label} `{name}`:\n>\n> ```\n"));
                for line in message.content.lines() {
                    out.push_str(&format!("> {line}\n"));
                }
                out.push_str("> ```\n\n");
            }
            MessageRole::System => {}
        }
    }
    out
}
