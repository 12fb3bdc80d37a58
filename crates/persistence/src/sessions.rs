//! The `chat_sessions` and `messages` tables.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use paas_core::{AgentId, MessageId, RunId, SessionId, TenantId, UserId};
use paas_models::{ChatSession, Message, MessageRole, ToolCallRecord};
use uuid::Uuid;

use crate::Page;
use crate::error::{DbError, parse_stored};
use crate::schema::{chat_sessions, messages};

#[derive(Queryable, Selectable)]
#[diesel(table_name = chat_sessions, check_for_backend(diesel::pg::Pg))]
struct SessionRow {
    id: Uuid,
    tenant_id: Uuid,
    user_id: Uuid,
    agent_id: Uuid,
    title: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SessionRow> for ChatSession {
    fn from(row: SessionRow) -> Self {
        ChatSession {
            id: SessionId::from_uuid(row.id),
            tenant_id: TenantId::from_uuid(row.tenant_id),
            user_id: UserId::from_uuid(row.user_id),
            agent_id: AgentId::from_uuid(row.agent_id),
            title: row.title,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

pub fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: SessionId,
    user: UserId,
    agent: AgentId,
    title: &str,
    now: DateTime<Utc>,
) -> Result<ChatSession, DbError> {
    Ok(diesel::insert_into(chat_sessions::table)
        .values((
            chat_sessions::id.eq(id.into_uuid()),
            chat_sessions::tenant_id.eq(tenant.into_uuid()),
            chat_sessions::user_id.eq(user.into_uuid()),
            chat_sessions::agent_id.eq(agent.into_uuid()),
            chat_sessions::title.eq(title),
            chat_sessions::created_at.eq(now),
            chat_sessions::updated_at.eq(now),
        ))
        .returning(SessionRow::as_returning())
        .get_result(conn)?
        .into())
}

/// A session of `owner` in the tenant (another user's session is not found).
pub fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    owner: UserId,
    id: SessionId,
) -> Result<Option<ChatSession>, DbError> {
    Ok(chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(tenant.into_uuid()))
        .filter(chat_sessions::user_id.eq(owner.into_uuid()))
        .filter(chat_sessions::id.eq(id.into_uuid()))
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?
        .map(ChatSession::from))
}

/// Whether a session exists (whoever owns it).
pub fn exists(conn: &mut PgConnection, tenant: TenantId, id: SessionId) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant.into_uuid()))
            .filter(chat_sessions::id.eq(id.into_uuid())),
    ))
    .get_result(conn)?)
}

/// Escapes `%`, `_` and `\` so user text matches literally in `ILIKE`.
fn like_pattern(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

/// The owner's sessions, most recently active first, optionally only those whose title
/// contains `query` (case-insensitive) or with one agent.
pub fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    owner: UserId,
    query: Option<&str>,
    agent: Option<AgentId>,
    page: Page,
) -> Result<Vec<ChatSession>, DbError> {
    let mut select = chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(tenant.into_uuid()))
        .filter(chat_sessions::user_id.eq(owner.into_uuid()))
        .select(SessionRow::as_select())
        .order((chat_sessions::updated_at.desc(), chat_sessions::id.desc()))
        .limit(page.limit)
        .offset(page.offset)
        .into_boxed();
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        select = select.filter(chat_sessions::title.ilike(like_pattern(query)));
    }
    if let Some(agent) = agent {
        select = select.filter(chat_sessions::agent_id.eq(agent.into_uuid()));
    }
    Ok(select
        .load(conn)?
        .into_iter()
        .map(ChatSession::from)
        .collect())
}

pub fn rename(
    conn: &mut PgConnection,
    tenant: TenantId,
    owner: UserId,
    id: SessionId,
    title: &str,
    now: DateTime<Utc>,
) -> Result<Option<ChatSession>, DbError> {
    Ok(diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant.into_uuid()))
            .filter(chat_sessions::user_id.eq(owner.into_uuid()))
            .filter(chat_sessions::id.eq(id.into_uuid())),
    )
    .set((
        chat_sessions::title.eq(title),
        chat_sessions::updated_at.eq(now),
    ))
    .returning(SessionRow::as_returning())
    .get_result(conn)
    .optional()?
    .map(ChatSession::from))
}

/// Marks activity (a new message).
pub fn touch(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: SessionId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant.into_uuid()))
            .filter(chat_sessions::id.eq(id.into_uuid())),
    )
    .set(chat_sessions::updated_at.eq(now))
    .execute(conn)?;
    Ok(())
}

/// Deletes a session and its messages. Returns whether it existed.
pub fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    owner: UserId,
    id: SessionId,
) -> Result<bool, DbError> {
    Ok(diesel::delete(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant.into_uuid()))
            .filter(chat_sessions::user_id.eq(owner.into_uuid()))
            .filter(chat_sessions::id.eq(id.into_uuid())),
    )
    .execute(conn)?
        > 0)
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(diesel::pg::Pg))]
struct MessageRow {
    id: Uuid,
    session_id: Uuid,
    run_id: Option<Uuid>,
    role: String,
    content: String,
    reasoning: String,
    tool_calls: serde_json::Value,
    tool_call_id: Option<String>,
    tool_name: Option<String>,
    is_error: bool,
    prompt_tokens: i32,
    completion_tokens: i32,
    created_at: DateTime<Utc>,
}

impl TryFrom<MessageRow> for Message {
    type Error = DbError;

    fn try_from(row: MessageRow) -> Result<Self, DbError> {
        let tool_calls: Vec<ToolCallRecord> = serde_json::from_value(row.tool_calls)
            .map_err(|err| DbError::Corrupt(format!("messages.tool_calls: {err}")))?;
        Ok(Message {
            id: MessageId::from_uuid(row.id),
            session_id: SessionId::from_uuid(row.session_id),
            run_id: row.run_id.map(RunId::from_uuid),
            role: parse_stored::<MessageRole>("messages.role", &row.role)?,
            content: row.content,
            reasoning: row.reasoning,
            tool_calls,
            tool_call_id: row.tool_call_id,
            tool_name: row.tool_name,
            is_error: row.is_error,
            prompt_tokens: u32::try_from(row.prompt_tokens).unwrap_or(0),
            completion_tokens: u32::try_from(row.completion_tokens).unwrap_or(0),
            created_at: row.created_at,
        })
    }
}

/// A message to append.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: MessageId,
    pub session_id: SessionId,
    pub run_id: Option<RunId>,
    pub role: MessageRole,
    pub content: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCallRecord>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub is_error: bool,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub created_at: DateTime<Utc>,
}

pub fn insert_messages(
    conn: &mut PgConnection,
    tenant: TenantId,
    new: &[NewMessage],
) -> Result<(), DbError> {
    let rows: Vec<_> = new
        .iter()
        .map(|m| {
            (
                messages::id.eq(m.id.into_uuid()),
                messages::tenant_id.eq(tenant.into_uuid()),
                messages::session_id.eq(m.session_id.into_uuid()),
                messages::run_id.eq(m.run_id.map(RunId::into_uuid)),
                messages::role.eq(m.role.as_str()),
                messages::content.eq(&m.content),
                messages::reasoning.eq(&m.reasoning),
                messages::tool_calls.eq(serde_json::json!(m.tool_calls)),
                messages::tool_call_id.eq(m.tool_call_id.as_deref()),
                messages::tool_name.eq(m.tool_name.as_deref()),
                messages::is_error.eq(m.is_error),
                messages::prompt_tokens.eq(i32::try_from(m.prompt_tokens).unwrap_or(i32::MAX)),
                messages::completion_tokens
                    .eq(i32::try_from(m.completion_tokens).unwrap_or(i32::MAX)),
                messages::created_at.eq(m.created_at),
            )
        })
        .collect();
    diesel::insert_into(messages::table)
        .values(rows)
        .execute(conn)?;
    Ok(())
}

/// A session's messages, oldest first (ids are time-ordered): one page, or all of them.
pub fn list_messages(
    conn: &mut PgConnection,
    tenant: TenantId,
    session: SessionId,
    page: Option<Page>,
) -> Result<Vec<Message>, DbError> {
    let mut query = messages::table
        .filter(messages::tenant_id.eq(tenant.into_uuid()))
        .filter(messages::session_id.eq(session.into_uuid()))
        .select(MessageRow::as_select())
        .order(messages::id.asc())
        .into_boxed();
    if let Some(page) = page {
        query = query.limit(page.limit).offset(page.offset);
    }
    query
        .load(conn)?
        .into_iter()
        .map(Message::try_from)
        .collect()
}
