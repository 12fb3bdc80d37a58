//! The `audit_events` table: append-only (the `paas_app` role may insert and read, never
//! update or delete).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use paas_core::{ApiKeyId, AuditEventId, TenantId, UserId};
use paas_models::{AuditAction, AuditEvent};
use uuid::Uuid;

use crate::error::DbError;
use crate::schema::audit_events;

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
struct AuditRow {
    id: Uuid,
    tenant_id: Uuid,
    actor_user_id: Option<Uuid>,
    actor_api_key_id: Option<Uuid>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    details: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        AuditEvent {
            id: AuditEventId::from_uuid(row.id),
            tenant_id: TenantId::from_uuid(row.tenant_id),
            actor_user_id: row.actor_user_id.map(UserId::from_uuid),
            actor_api_key_id: row.actor_api_key_id.map(ApiKeyId::from_uuid),
            action: row.action,
            target_type: row.target_type,
            target_id: row.target_id,
            ip: row.ip,
            user_agent: row.user_agent,
            details: row.details,
            created_at: row.created_at,
        }
    }
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub tenant_id: TenantId,
    pub actor_user_id: Option<UserId>,
    pub actor_api_key_id: Option<ApiKeyId>,
    pub action: AuditAction,
    pub target_type: Option<&'static str>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
    pub now: DateTime<Utc>,
}

/// Keeps stored strings within their columns' sizes (a client controls the user agent).
fn clip(value: Option<String>, max_chars: usize) -> Option<String> {
    value.map(|v| v.chars().take(max_chars).collect())
}

pub fn insert(conn: &mut PgConnection, event: NewAuditEvent) -> Result<(), DbError> {
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::id.eq(AuditEventId::new().into_uuid()),
            audit_events::tenant_id.eq(event.tenant_id.into_uuid()),
            audit_events::actor_user_id.eq(event.actor_user_id.map(UserId::into_uuid)),
            audit_events::actor_api_key_id.eq(event.actor_api_key_id.map(ApiKeyId::into_uuid)),
            audit_events::action.eq(event.action.as_str()),
            audit_events::target_type.eq(event.target_type),
            audit_events::target_id.eq(clip(event.target_id, 64)),
            audit_events::ip.eq(clip(event.ip, 64)),
            audit_events::user_agent.eq(clip(event.user_agent, 512)),
            audit_events::details.eq(event.details),
            audit_events::created_at.eq(event.now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Filters for reading the log.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub action: Option<AuditAction>,
    pub actor_user_id: Option<UserId>,
    /// Only events strictly older than this one (keyset pagination).
    pub before: Option<AuditEventId>,
}

/// Newest first (ids are UUIDv7, ordered by creation), at most `limit`.
pub fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<AuditEvent>, DbError> {
    let mut query = audit_events::table
        .filter(audit_events::tenant_id.eq(tenant.into_uuid()))
        .select(AuditRow::as_select())
        .order(audit_events::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(action) = filter.action {
        query = query.filter(audit_events::action.eq(action.as_str()));
    }
    if let Some(actor) = filter.actor_user_id {
        query = query.filter(audit_events::actor_user_id.eq(actor.into_uuid()));
    }
    if let Some(before) = filter.before {
        query = query.filter(audit_events::id.lt(before.into_uuid()));
    }
    Ok(query
        .load(conn)?
        .into_iter()
        .map(AuditEvent::from)
        .collect())
}
