//! The platform operator's use cases: list and inspect tenants, change plans, override quotas,
//! suspend and reactivate. They act across tenants (through [`Db::operator_tx`]) and are
//! reached only with `PAAS_OPERATOR_TOKEN` or from the CLI on the server's own machine. Every
//! change is written to the tenant's audit log, with no user as the actor.
//!
//! [`Db::operator_tx`]: paas_persistence::Db::operator_tx

use paas_core::{Error, TenantId};
use paas_models::{AuditAction, Plan, QuotaOverrides, Tenant, TenantStatus};
use paas_persistence::{Page, audit, quotas, tenants};

use crate::dto::OperatorTenant;
use crate::services::{AuditContext, ClientInfo, usage};
use crate::state::AppState;

fn context(tenant: TenantId, client: &ClientInfo, state: &AppState) -> AuditContext {
    AuditContext {
        tenant_id: tenant,
        actor_user_id: None,
        actor_api_key_id: None,
        client: client.clone(),
        now: state.clock.now(),
    }
}

/// Every tenant, oldest first.
pub async fn list(state: &AppState, page: Page) -> Result<Vec<Tenant>, Error> {
    state
        .db
        .operator_tx(move |conn| tenants::list_all(conn, page))
        .await
}

/// One tenant with its plan, limits and usage.
pub async fn show(state: &AppState, id: TenantId) -> Result<OperatorTenant, Error> {
    let tenant = state
        .db
        .operator_tx(move |conn| tenants::get(conn, id))
        .await?
        .ok_or_else(|| Error::not_found("tenant"))?;
    let quota = usage::quota_status(state, id, true).await?;
    Ok(OperatorTenant { tenant, quota })
}

/// Parses a plan name, with the stable error for a wrong one.
pub fn parse_plan(value: &str) -> Result<Plan, Error> {
    value
        .parse()
        .map_err(|_| Error::validation("plan", "plan must be free, pro or enterprise"))
}

/// Moves a tenant to another plan.
pub async fn change_plan(
    state: &AppState,
    id: TenantId,
    plan: Plan,
    client: &ClientInfo,
) -> Result<OperatorTenant, Error> {
    let ctx = context(id, client, state);
    state
        .db
        .operator_tx(move |conn| {
            let before = tenants::get(conn, id)?.ok_or_else(|| Error::not_found("tenant"))?;
            quotas::set_plan(conn, id, plan, ctx.now)?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::TenantPlanChanged,
                    Some(("tenant", id.to_string())),
                    serde_json::json!({"by": "operator", "from": before.plan, "to": plan}),
                ),
            )?;
            Ok(())
        })
        .await?;
    state.cache.invalidate(id).await;
    show(state, id).await
}

/// Replaces a tenant's quota overrides.
pub async fn set_overrides(
    state: &AppState,
    id: TenantId,
    overrides: QuotaOverrides,
    client: &ClientInfo,
) -> Result<OperatorTenant, Error> {
    if let Some((field, value)) = overrides.invalid_field() {
        return Err(Error::validation(
            field,
            format!(
                "{field} must be a whole number from 0 up to the column's maximum (got {value})"
            ),
        ));
    }
    let ctx = context(id, client, state);
    state
        .db
        .operator_tx(move |conn| {
            tenants::get(conn, id)?.ok_or_else(|| Error::not_found("tenant"))?;
            quotas::set_overrides(conn, id, &overrides, ctx.now)?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::TenantQuotaChanged,
                    Some(("tenant", id.to_string())),
                    serde_json::json!({"by": "operator", "overrides": overrides}),
                ),
            )?;
            Ok(())
        })
        .await?;
    state.cache.invalidate(id).await;
    show(state, id).await
}

/// Suspends (every user and key of the tenant is refused from the next request) or
/// reactivates a tenant.
pub async fn set_status(
    state: &AppState,
    id: TenantId,
    status: TenantStatus,
    client: &ClientInfo,
) -> Result<OperatorTenant, Error> {
    let ctx = context(id, client, state);
    state
        .db
        .operator_tx(move |conn| {
            let before = tenants::get(conn, id)?.ok_or_else(|| Error::not_found("tenant"))?;
            if before.status == status {
                return Ok(());
            }
            tenants::set_status(conn, id, status, ctx.now)?;
            let action = match status {
                TenantStatus::Suspended => AuditAction::TenantSuspended,
                TenantStatus::Active => AuditAction::TenantReactivated,
            };
            audit::insert(
                conn,
                ctx.event(
                    action,
                    Some(("tenant", id.to_string())),
                    serde_json::json!({"by": "operator"}),
                ),
            )?;
            Ok(())
        })
        .await?;
    state.cache.invalidate(id).await;
    show(state, id).await
}
