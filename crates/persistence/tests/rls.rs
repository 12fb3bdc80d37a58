//! Row-level security holds even though the tests connect as a superuser: every query runs as
//! `paas_app`, and a transaction without a tenant sees nothing.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use paas_core::{ErrorKind, Role, TenantId, UserId};
use paas_models::Plan;
use paas_persistence::schema::{audit_events, tenants, users};
use paas_persistence::{Db, DbConfig, DbError, tenants as tenant_repo, users as user_repo};
use paas_testing::TestDatabase;

fn db(test_db: &TestDatabase) -> Db {
    Db::new(&DbConfig {
        url: test_db.url().to_owned(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

async fn create_tenant(db: &Db, name: &'static str, email: &'static str) -> (TenantId, UserId) {
    let tenant_id = TenantId::new();
    let user_id = UserId::new();
    db.tenant_tx(tenant_id, move |conn| {
        let now = Utc::now();
        tenant_repo::insert(
            conn,
            &tenant_repo::NewTenant {
                id: tenant_id,
                name,
                display_name: name,
                plan: Plan::Free,
                now,
            },
        )?;
        user_repo::insert(
            conn,
            &user_repo::NewUser {
                id: user_id,
                tenant_id,
                email,
                display_name: "Admin",
                password_hash: "$2b$04$notarealhashnotarealhashnotarealhashnotarealhashnotare",
                role: Role::Admin,
                now,
            },
        )?;
        paas_persistence::audit::insert(
            conn,
            paas_persistence::audit::NewAuditEvent {
                tenant_id,
                actor_user_id: Some(user_id),
                actor_api_key_id: None,
                action: paas_models::AuditAction::TenantCreated,
                target_type: Some("tenant"),
                target_id: Some(tenant_id.to_string()),
                ip: None,
                user_agent: None,
                details: serde_json::json!({}),
                now,
            },
        )?;
        Ok(())
    })
    .await
    .unwrap();
    (tenant_id, user_id)
}

#[derive(QueryableByName)]
struct Who {
    #[diesel(sql_type = Text)]
    current_user: String,
    #[diesel(sql_type = Bool)]
    is_super: bool,
}

#[tokio::test]
async fn a_transaction_without_a_tenant_sees_no_rows() {
    let test_db = TestDatabase::new();
    let db = db(&test_db);
    create_tenant(&db, "acme", "a@acme.test").await;
    create_tenant(&db, "globex", "b@globex.test").await;

    // The rows are really there, as the owner can see…
    let mut owner = test_db.owner_connection();
    let total: i64 = users::table.count().get_result(&mut owner).unwrap();
    assert_eq!(total, 2);

    // …but an unscoped transaction, and a query with no tenant filter at all, sees none.
    let (tenants_seen, users_seen, audit_seen, who) = db
        .anonymous_tx(|conn| {
            Ok((
                tenants::table.count().get_result::<i64>(conn)?,
                users::table.count().get_result::<i64>(conn)?,
                audit_events::table.count().get_result::<i64>(conn)?,
                diesel::sql_query(
                    "SELECT current_user::text AS current_user, \
                     (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS is_super",
                )
                .get_result::<Who>(conn)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!((tenants_seen, users_seen, audit_seen), (0, 0, 0));
    assert_eq!(who.current_user, "paas_app");
    assert!(!who.is_super, "queries must not run as a superuser");
}

#[tokio::test]
async fn a_tenant_transaction_sees_only_its_own_rows_even_without_a_filter() {
    let test_db = TestDatabase::new();
    let db = db(&test_db);
    let (acme, _) = create_tenant(&db, "acme", "a@acme.test").await;
    let (globex, globex_admin) = create_tenant(&db, "globex", "b@globex.test").await;

    let emails: Vec<String> = db
        .tenant_tx(acme, |conn| {
            Ok(users::table.select(users::email).load(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(emails, vec!["a@acme.test".to_owned()]);

    // Reading another tenant's user by id finds nothing.
    let other = db
        .tenant_tx(acme, move |conn| {
            Ok(users::table
                .find(globex_admin.into_uuid())
                .select(users::email)
                .first::<String>(conn)
                .optional()?)
        })
        .await
        .unwrap();
    assert_eq!(other, None);

    // Updating another tenant's rows changes nothing.
    let updated = db
        .tenant_tx(acme, move |conn| {
            Ok(
                diesel::update(users::table.filter(users::tenant_id.eq(globex.into_uuid())))
                    .set(users::role.eq("viewer"))
                    .execute(conn)?,
            )
        })
        .await
        .unwrap();
    assert_eq!(updated, 0);

    // Writing a row into another tenant is refused outright.
    let err = db
        .tenant_tx(acme, move |conn| {
            user_repo::insert(
                conn,
                &user_repo::NewUser {
                    id: UserId::new(),
                    tenant_id: globex,
                    email: "intruder@acme.test",
                    display_name: "Intruder",
                    password_hash: "x",
                    role: Role::Admin,
                    now: Utc::now(),
                },
            )
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    let mut owner = test_db.owner_connection();
    let globex_users: i64 = users::table
        .filter(users::tenant_id.eq(globex.into_uuid()))
        .count()
        .get_result(&mut owner)
        .unwrap();
    assert_eq!(globex_users, 1);
}

#[tokio::test]
async fn the_audit_log_is_append_only_for_the_server() {
    let test_db = TestDatabase::new();
    let db = db(&test_db);
    let (acme, _) = create_tenant(&db, "acme", "a@acme.test").await;
    let err = db
        .tenant_tx(acme, |conn| {
            Ok(diesel::delete(audit_events::table).execute(conn)?)
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err:?}");
    let err = db
        .tenant_tx(acme, |conn| {
            Ok(diesel::update(audit_events::table)
                .set(audit_events::action.eq("x"))
                .execute(conn)?)
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err:?}");
}

#[tokio::test]
async fn a_rule_broken_inside_a_transaction_rolls_it_back() {
    let test_db = TestDatabase::new();
    let db = db(&test_db);
    let (acme, admin) = create_tenant(&db, "acme", "a@acme.test").await;
    let err = db
        .tenant_tx(acme, move |conn| {
            diesel::update(users::table.find(admin.into_uuid()))
                .set(users::display_name.eq("Changed"))
                .execute(conn)?;
            Err::<(), _>(DbError::Rule(paas_core::Error::conflict(
                "last_admin",
                "no",
            )))
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "last_admin");
    let name: String = users::table
        .find(admin.into_uuid())
        .select(users::display_name)
        .first(&mut test_db.owner_connection())
        .unwrap();
    assert_eq!(name, "Admin");
}

#[tokio::test]
async fn unique_violations_become_conflicts_with_useful_codes() {
    let test_db = TestDatabase::new();
    let db = db(&test_db);
    create_tenant(&db, "acme", "a@acme.test").await;
    let new_id = TenantId::new();
    let err = db
        .tenant_tx(new_id, move |conn| {
            tenant_repo::insert(
                conn,
                &tenant_repo::NewTenant {
                    id: new_id,
                    name: "acme",
                    display_name: "Acme again",
                    plan: Plan::Free,
                    now: Utc::now(),
                },
            )
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.code(), "tenant_name_taken");
}

#[derive(QueryableByName)]
struct Unprotected {
    #[diesel(sql_type = Text)]
    table_name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Guards future migrations: every table with a `tenant_id` column (and `tenants` itself) has
/// row-level security enabled and at least one policy.
#[tokio::test]
async fn every_tenant_owned_table_has_row_level_security() {
    let test_db = TestDatabase::new();
    let mut owner = test_db.owner_connection();
    let unprotected: Vec<Unprotected> = diesel::sql_query(
        "SELECT c.relname::text AS table_name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'r'
            AND (c.relname = 'tenants' OR EXISTS (
                  SELECT 1 FROM information_schema.columns col
                   WHERE col.table_schema = 'public' AND col.table_name = c.relname
                     AND col.column_name = 'tenant_id'))
            AND (NOT c.relrowsecurity
                 OR NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))",
    )
    .load(&mut owner)
    .unwrap();
    let names: Vec<_> = unprotected.into_iter().map(|t| t.table_name).collect();
    assert!(
        names.is_empty(),
        "tables without row-level security: {names:?}"
    );
    let protected: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity",
    )
    .get_result(&mut owner)
    .unwrap();
    assert!(protected.n >= 6);
}

#[tokio::test]
async fn the_operator_sees_across_tenants_only_what_it_needs_whatever_role_connects() {
    let test_db = TestDatabase::new();
    // Connect as a role that is neither owner nor superuser, only a member of paas_app: the
    // deployment the docs recommend.
    let role = format!("paas_srv_{}", uuid::Uuid::new_v4().simple());
    let mut owner = test_db.owner_connection();
    diesel::sql_query(format!("CREATE ROLE {role} LOGIN IN ROLE paas_app"))
        .execute(&mut owner)
        .unwrap();
    let mut url = url::Url::parse(test_db.url()).unwrap();
    url.set_username(&role).unwrap();
    let db = Db::new(&DbConfig {
        url: url.to_string(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let (acme, _) = create_tenant(&db, "acme", "a@acme.test").await;
    let (globex, _) = create_tenant(&db, "globex", "b@globex.test").await;

    let (listed, users_seen, keys_seen) = db
        .operator_tx(|conn| {
            let listed = tenant_repo::list_all(conn, paas_persistence::Page::new(None, None))?;
            Ok((
                listed.into_iter().map(|t| t.id).collect::<Vec<_>>(),
                users::table.count().get_result::<i64>(conn)?,
                paas_persistence::schema::api_keys::table
                    .count()
                    .get_result::<i64>(conn)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![acme, globex]);
    assert_eq!(users_seen, 2, "counts of users are readable");
    assert_eq!(keys_seen, 0, "nothing the operator does not need");
    // It changes plans across tenants; the same query in a tenant's transaction cannot.
    db.operator_tx(move |conn| {
        paas_persistence::quotas::set_plan(conn, globex, Plan::Pro, Utc::now())
    })
    .await
    .unwrap();
    let seen_by_acme = db
        .tenant_tx(acme, |conn| {
            Ok(tenants::table.count().get_result::<i64>(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(seen_by_acme, 1);
    drop(db);
    let _ = diesel::sql_query(format!("DROP OWNED BY {role}")).execute(&mut owner);
    let _ = diesel::sql_query(format!("DROP ROLE {role}")).execute(&mut owner);
}
