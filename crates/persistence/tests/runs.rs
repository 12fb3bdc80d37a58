//! Run leases: the owner renews its runs in one statement; runs whose lease expired (their
//! process died) are claimed across tenants, once, marked failed and billed; runs still leased
//! are never touched.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use paas_core::{AgentId, RunId, TenantId, UserId};
use paas_models::RunSource;
use paas_persistence::runs::{NewRun, RunLease, RunProgress};
use paas_persistence::schema::{runs as runs_table, usage_records};
use paas_persistence::{Db, DbConfig, runs};
use paas_testing::TestDatabase;
use uuid::Uuid;

const TENANT: &str = "00000000-0000-7000-8000-000000000001";
const OTHER_TENANT: &str = "00000000-0000-7000-8000-000000000011";
const USER: &str = "00000000-0000-7000-8000-000000000002";
const AGENT: &str = "00000000-0000-7000-8000-000000000003";
/// Two processes: `A` died, `B` is alive.
const OWNER_A: &str = "00000000-0000-4000-8000-00000000000a";
const OWNER_B: &str = "00000000-0000-4000-8000-00000000000b";

fn setup() -> (TestDatabase, Db) {
    let test_db = TestDatabase::new();
    let db = Db::new(&DbConfig {
        url: test_db.url().to_owned(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
    })
    .unwrap();
    test_db.seed_tenant(TENANT, "acme", USER, AGENT);
    test_db.seed_tenant(
        OTHER_TENANT,
        "globex",
        "00000000-0000-7000-8000-000000000012",
        "00000000-0000-7000-8000-000000000013",
    );
    (test_db, db)
}

/// Inserts a run as the owner would, with raw lease columns (`NULL` for none).
fn run(
    conn: &mut PgConnection,
    id: &str,
    tenant: &str,
    status: &str,
    owner: &str,
    lease_until: &str,
    started_at: &str,
) {
    let (user, agent) = if tenant == TENANT {
        (USER, AGENT)
    } else {
        (
            "00000000-0000-7000-8000-000000000012",
            "00000000-0000-7000-8000-000000000013",
        )
    };
    conn.batch_execute(&format!(
        "INSERT INTO runs (id, tenant_id, user_id, agent_id, source, status, provider, model,
                           steps, prompt_tokens, completion_tokens, started_at, lease_owner, lease_until)
         VALUES ('{id}', '{tenant}', '{user}', '{agent}', 'chat', '{status}', 'mock', 'mock',
                 2, 10, 5, {started_at}, {owner}, {lease_until});"
    ))
    .unwrap();
}

fn statuses(conn: &mut PgConnection) -> Vec<(Uuid, String, Option<String>)> {
    runs_table::table
        .order(runs_table::id)
        .select((runs_table::id, runs_table::status, runs_table::error_code))
        .load(conn)
        .unwrap()
}

fn id(n: u8) -> String {
    format!("00000000-0000-7000-8000-0000000001{n:02x}")
}

#[tokio::test]
async fn runs_with_expired_leases_are_claimed_once_billed_and_leased_ones_left_alone() {
    let (test_db, db) = setup();
    let mut owner = test_db.owner_connection();
    let dead = format!("'{OWNER_A}'");
    let alive = format!("'{OWNER_B}'");
    let expired = "now() - interval '1 second'";
    let leased = "now() + interval '30 seconds'";
    // 1: the dead process's run, lease expired → claimed.
    run(
        &mut owner,
        &id(1),
        TENANT,
        "running",
        &dead,
        expired,
        "now()",
    );
    // 2: another tenant's run of the dead process → claimed too (the sweep crosses tenants).
    run(
        &mut owner,
        &id(2),
        OTHER_TENANT,
        "running",
        &dead,
        expired,
        "now()",
    );
    // 3: a live process's run, however old → left alone.
    run(
        &mut owner,
        &id(3),
        TENANT,
        "running",
        &alive,
        leased,
        "now() - interval '1 hour'",
    );
    // 4: finished with an expired lease → left alone.
    run(
        &mut owner,
        &id(4),
        TENANT,
        "completed",
        &dead,
        expired,
        "now()",
    );
    // 5 and 6: no lease (an older version's runs): claimed only once older than any run.
    run(
        &mut owner,
        &id(5),
        TENANT,
        "running",
        "NULL",
        "NULL",
        "now() - interval '1 hour'",
    );
    run(
        &mut owner,
        &id(6),
        TENANT,
        "running",
        "NULL",
        "NULL",
        "now()",
    );
    // 7: expired, but its ledger row is already there (its owner billed it): not billed again.
    run(
        &mut owner,
        &id(7),
        TENANT,
        "running",
        &dead,
        expired,
        "now()",
    );
    owner
        .batch_execute(&format!(
            "INSERT INTO usage_records (run_id, tenant_id, user_id, agent_id, source, provider, model,
                 status, prompt_tokens, completion_tokens, usage_estimated, duration_ms, started_at, finished_at)
             VALUES ('{}', '{TENANT}', '{USER}', '{AGENT}', 'chat', 'mock', 'mock', 'completed',
                 100, 50, false, 10, now(), now());",
            id(7)
        ))
        .unwrap();

    let unleased_after = Duration::from_secs(900);
    let mut claimed = db
        .anonymous_tx(move |conn| runs::claim_orphaned(conn, unleased_after, 100))
        .await
        .unwrap();
    claimed.sort_by_key(|run| run.id);
    let ids: Vec<String> = claimed.iter().map(|run| run.id.to_string()).collect();
    assert_eq!(ids, vec![id(1), id(2), id(5), id(7)]);
    let first = &claimed[0];
    assert_eq!(first.tenant_id.to_string(), TENANT);
    assert_eq!(first.source, RunSource::Chat);
    assert_eq!((first.steps, first.tokens()), (2, 15));
    assert_eq!(first.lease_owner, Some(OWNER_A.parse().unwrap()));
    assert_eq!(claimed[2].lease_owner, None);

    let again = db
        .anonymous_tx(move |conn| runs::claim_orphaned(conn, unleased_after, 100))
        .await
        .unwrap();
    assert!(again.is_empty(), "a run is claimed once: {again:?}");

    let failed = Some("interrupted".to_owned());
    let expected: Vec<(Uuid, String, Option<String>)> = [
        (1, "failed", failed.clone()),
        (2, "failed", failed.clone()),
        (3, "running", None),
        (4, "completed", None),
        (5, "failed", failed.clone()),
        (6, "running", None),
        (7, "failed", failed),
    ]
    .into_iter()
    .map(|(n, status, code)| (id(n).parse().unwrap(), status.to_owned(), code))
    .collect();
    assert_eq!(statuses(&mut owner), expected);

    // Each claimed run has one ledger row: what was known of it, or the row already there.
    let ledger: Vec<(Uuid, String, i32, i32)> = usage_records::table
        .order(usage_records::run_id)
        .select((
            usage_records::run_id,
            usage_records::status,
            usage_records::prompt_tokens,
            usage_records::completion_tokens,
        ))
        .load(&mut owner)
        .unwrap();
    let expected: Vec<(Uuid, String, i32, i32)> = [
        (1, "failed", 10, 5),
        (2, "failed", 10, 5),
        (5, "failed", 10, 5),
        (7, "completed", 100, 50),
    ]
    .into_iter()
    .map(|(n, status, p, c)| (id(n).parse().unwrap(), status.to_owned(), p, c))
    .collect();
    assert_eq!(ledger, expected);
}

#[tokio::test]
async fn the_owner_renews_its_running_runs_in_one_statement_and_they_are_not_claimed() {
    let (test_db, db) = setup();
    let mut owner = test_db.owner_connection();
    let mine = format!("'{OWNER_A}'");
    let theirs = format!("'{OWNER_B}'");
    let expired = "now() - interval '1 second'";
    // The owner was slow to renew: its leases just ran out, but no sweep has claimed them yet.
    run(
        &mut owner,
        &id(1),
        TENANT,
        "running",
        &mine,
        expired,
        "now()",
    );
    run(
        &mut owner,
        &id(2),
        OTHER_TENANT,
        "running",
        &mine,
        expired,
        "now()",
    );
    run(
        &mut owner,
        &id(3),
        TENANT,
        "completed",
        &mine,
        expired,
        "now()",
    );
    run(
        &mut owner,
        &id(4),
        TENANT,
        "running",
        &theirs,
        expired,
        "now()",
    );
    let progress = |n: u8, tokens: u32| RunProgress {
        id: id(n).parse().unwrap(),
        steps: 3,
        prompt_tokens: tokens,
        completion_tokens: tokens,
        usage_estimated: false,
    };
    let lease = RunLease {
        owner: OWNER_A.parse().unwrap(),
        duration: Duration::from_secs(30),
    };
    // Run 2's progress is behind what is stored: never lowered. Runs 3 (finished) and 4
    // (another process's) are not renewed.
    let asked = vec![
        progress(1, 40),
        progress(2, 1),
        progress(3, 40),
        progress(4, 40),
    ];
    let mut renewed = db
        .anonymous_tx(move |conn| runs::renew_leases(conn, lease, &asked))
        .await
        .unwrap();
    renewed.sort();
    let expected: Vec<RunId> = vec![id(1).parse().unwrap(), id(2).parse().unwrap()];
    assert_eq!(renewed, expected);

    let claimed = db
        .anonymous_tx(|conn| runs::claim_orphaned(conn, Duration::from_secs(900), 100))
        .await
        .unwrap();
    let ids: Vec<String> = claimed.iter().map(|run| run.id.to_string()).collect();
    assert_eq!(ids, vec![id(4)], "only the run nobody renewed is claimed");

    let rows: Vec<(Uuid, i32, i32, i32, bool)> = runs_table::table
        .order(runs_table::id)
        .select((
            runs_table::id,
            runs_table::steps,
            runs_table::prompt_tokens,
            runs_table::completion_tokens,
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "coalesce(lease_until > now() + interval '25 seconds', false)",
            ),
        ))
        .load(&mut owner)
        .unwrap();
    let expected: Vec<(Uuid, i32, i32, i32, bool)> = [
        (1, 3, 40, 40, true),
        (2, 3, 10, 5, true),
        (3, 2, 10, 5, false),
        (4, 2, 10, 5, false),
    ]
    .into_iter()
    .map(|(n, s, p, c, leased)| (id(n).parse().unwrap(), s, p, c, leased))
    .collect();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn a_new_run_is_stored_with_its_owner_and_a_lease_from_now() {
    let (test_db, db) = setup();
    let tenant: TenantId = TENANT.parse().unwrap();
    let lease = RunLease {
        owner: OWNER_A.parse().unwrap(),
        duration: Duration::from_secs(30),
    };
    let new = NewRun {
        id: RunId::new(),
        tenant_id: tenant,
        session_id: None,
        user_id: USER.parse::<UserId>().unwrap(),
        api_key_id: None,
        agent_id: AGENT.parse::<AgentId>().unwrap(),
        source: RunSource::Openai,
        provider: "mock".into(),
        model: "mock".into(),
        started_at: Utc::now(),
        lease,
    };
    db.tenant_tx(tenant, move |conn| runs::insert(conn, &new))
        .await
        .unwrap();
    let (owner, lease_ok): (Option<Uuid>, bool) = runs_table::table
        .select((
            runs_table::lease_owner,
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "lease_until BETWEEN now() + interval '25 seconds' AND now() + interval '31 seconds'",
            ),
        ))
        .first(&mut test_db.owner_connection())
        .unwrap();
    assert_eq!(owner, Some(lease.owner));
    assert!(lease_ok, "the lease runs 30 s from the insert");
}
