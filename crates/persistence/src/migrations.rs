//! Embedded migrations and database creation, run as the connecting (owner) role — not as
//! `paas_app` — by `agent-paas migrate` and at `serve` start-up.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Bool, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use paas_core::Error;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock that serialises migrations when several replicas start at once.
const MIGRATION_LOCK: i64 = 0x7061_6173_6d69_6772; // "paasmigr"

fn connect(url: &str) -> Result<PgConnection, Error> {
    PgConnection::establish(url).map_err(|err| {
        Error::unavailable("database_unavailable", "cannot connect to the database", 2)
            .with_source(err)
    })
}

/// Applies every pending migration and returns the names of those it applied. Holds an advisory
/// lock while it runs, so concurrent callers apply each migration once.
pub fn run_pending(url: &str) -> Result<Vec<String>, Error> {
    let mut conn = connect(url)?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(Error::internal)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(|err| Error::internal(format!("migration failed: {err}")));
    let unlock = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    let applied = applied?;
    unlock.map_err(Error::internal)?;
    Ok(applied)
}

/// Names of migrations not yet applied.
pub fn pending(url: &str) -> Result<Vec<String>, Error> {
    let mut conn = connect(url)?;
    conn.pending_migrations(MIGRATIONS)
        .map(|list| list.iter().map(|m| m.name().to_string()).collect())
        .map_err(|err| Error::internal(format!("cannot list migrations: {err}")))
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

/// Creates the database named in `url` if it does not exist yet, by connecting to the
/// `postgres` maintenance database on the same server. Returns whether it created it.
pub fn create_database_if_missing(url: &str) -> Result<bool, Error> {
    let parsed = url::Url::parse(url).map_err(|err| {
        Error::bad_request("invalid_database_url", format!("DATABASE_URL: {err}"))
    })?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        return Err(Error::bad_request(
            "invalid_database_url",
            "DATABASE_URL names no database",
        ));
    }
    let mut maintenance = parsed.clone();
    maintenance.set_path("/postgres");
    let mut conn = connect(maintenance.as_str())?;
    let found =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(&name)
            .get_result::<Exists>(&mut conn)
            .map_err(Error::internal)?;
    if found.exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    conn.batch_execute(&format!("CREATE DATABASE {quoted}"))
        .map_err(Error::internal)?;
    Ok(true)
}
