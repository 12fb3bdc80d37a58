//! Reading the audit log (admins; the handler authorises).

use paas_core::{Error, Principal};
use paas_models::AuditEvent;
use paas_persistence::audit;

use crate::state::AppState;

/// Newest first; `limit` is clamped to 1..=200.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    filter: audit::AuditFilter,
    limit: i64,
) -> Result<Vec<AuditEvent>, Error> {
    let tenant = principal.tenant_id;
    let limit = limit.clamp(1, 200);
    state
        .db
        .tenant_tx(tenant, move |conn| {
            audit::list(conn, tenant, &filter, limit)
        })
        .await
}
