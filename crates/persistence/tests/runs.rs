//! Runs orphaned by a dead process are found across tenants and marked failed, once.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use diesel::connection::SimpleConnection;
use paas_persistence::{Db, DbConfig, runs};
use paas_testing::TestDatabase;

#[tokio::test]
async fn orphaned_runs_are_failed_and_recent_ones_left_alone() {
    let test_db = TestDatabase::new();
    let db = Db::new(&DbConfig {
        url: test_db.url().to_owned(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let mut owner = test_db.owner_connection();
    owner
        .batch_execute(
            "INSERT INTO tenants (id, name, display_name) VALUES ('00000000-0000-7000-8000-000000000001', 'acme', 'acme');
             INSERT INTO users (id, tenant_id, email, display_name, password_hash, role)
                 VALUES ('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000001', 'a@acme.test', 'a', 'x', 'admin');
             INSERT INTO agents (id, tenant_id, name, display_name, builtin_provider, model, max_tokens, max_steps, timeout_seconds)
                 VALUES ('00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001', 'a', 'a', 'mock', 'mock', 10, 1, 10);
             INSERT INTO runs (id, tenant_id, user_id, agent_id, source, status, provider, model, started_at) VALUES
                 ('00000000-0000-7000-8000-00000000000a', '00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002',
                  '00000000-0000-7000-8000-000000000003', 'chat', 'running', 'mock', 'mock', now() - interval '1 hour'),
                 ('00000000-0000-7000-8000-00000000000b', '00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002',
                  '00000000-0000-7000-8000-000000000003', 'chat', 'running', 'mock', 'mock', now());",
        )
        .unwrap();
    let before = Utc::now() - chrono::Duration::minutes(15);
    let failed = db
        .anonymous_tx(move |conn| runs::fail_orphaned(conn, before))
        .await
        .unwrap();
    assert_eq!(failed, 1);
    let again = db
        .anonymous_tx(move |conn| runs::fail_orphaned(conn, before))
        .await
        .unwrap();
    assert_eq!(again, 0, "idempotent");
    use diesel::prelude::*;
    use paas_persistence::schema::runs as table;
    let statuses: Vec<(String, Option<String>)> = table::table
        .order(table::id)
        .select((table::status, table::error_code))
        .load(&mut owner)
        .unwrap();
    assert_eq!(
        statuses,
        vec![
            ("failed".into(), Some("interrupted".into())),
            ("running".into(), None)
        ]
    );
}
