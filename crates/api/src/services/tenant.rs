//! The caller's tenant: read by anyone in it, changed by admins.

use paas_core::{Error, Principal};
use paas_models::{AuditAction, Tenant, validate};
use paas_persistence::{audit, tenants};
use serde_json::json;

use crate::services::{AuditContext, ClientInfo};
use crate::state::AppState;

pub async fn get(state: &AppState, principal: &Principal) -> Result<Tenant, Error> {
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| tenants::get(conn, tenant))
        .await?
        .ok_or_else(|| Error::not_found("tenant"))
}

#[derive(Debug, Default)]
pub struct TenantUpdate {
    pub display_name: Option<String>,
    pub settings: Option<serde_json::Value>,
}

pub async fn update(
    state: &AppState,
    principal: &Principal,
    update: TenantUpdate,
    client: &ClientInfo,
) -> Result<Tenant, Error> {
    let display_name = update
        .display_name
        .as_deref()
        .map(|name| validate::display_name("display_name", name, validate::TENANT_DISPLAY_NAME_MAX))
        .transpose()?;
    if let Some(settings) = &update.settings {
        validate::settings(settings)?;
    }
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| {
            let before = tenants::get(conn, tenant)?.ok_or_else(|| Error::not_found("tenant"))?;
            let changes = tenants::TenantChanges {
                display_name,
                settings: update.settings,
            };
            if changes.display_name.is_none() && changes.settings.is_none() {
                return Ok(before);
            }
            let after = tenants::update(conn, tenant, &changes, now)?
                .ok_or_else(|| Error::not_found("tenant"))?;
            let mut details = serde_json::Map::new();
            if after.display_name != before.display_name {
                details.insert(
                    "display_name".into(),
                    json!({"from": before.display_name, "to": after.display_name}),
                );
            }
            if after.settings != before.settings {
                details.insert(
                    "settings".into(),
                    json!({"from": before.settings, "to": after.settings}),
                );
            }
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::TenantUpdated,
                    Some(("tenant", tenant.to_string())),
                    details.into(),
                ),
            )?;
            Ok(after)
        })
        .await
}
