//! The connection pool and the only two ways to run queries: [`Db::tenant_tx`] and
//! [`Db::anonymous_tx`]. Both open a transaction as the `paas_app` role, so row-level security
//! applies even when `DATABASE_URL` names a superuser or the tables' owner.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Metrics, Object, RecycleError, RecycleResult};
use deadpool_diesel::Runtime;
use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{PgConnection, RunQueryDsl};
use paas_core::{Error, TenantId};

use crate::error::{DbError, unavailable};

type Pool = deadpool::managed::Pool<PgManager>;

/// Opens the pool's connections. Unlike deadpool-diesel's own manager, handing out an idle
/// connection costs nothing: no `SELECT 1` round trip and no trip to a blocking thread before
/// every transaction. A connection that died while idle (the database restarted) is found by
/// the first statement of the transaction it was handed to, before any of the caller's work
/// ran, and replaced (see [`Db::scoped_tx`]).
struct PgManager {
    url: String,
}

impl deadpool::managed::Manager for PgManager {
    type Type = deadpool_diesel::Connection<PgConnection>;
    type Error = deadpool_diesel::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        let url = self.url.clone();
        deadpool_diesel::Connection::new(Runtime::Tokio1, move || {
            PgConnection::establish(&url).map_err(deadpool_diesel::Error::Connection)
        })
        .await
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        if conn.is_mutex_poisoned() {
            return Err(RecycleError::message("a query panicked on this connection"));
        }
        Ok(())
    }
}

/// Whether a query failed because the connection is gone (the server closed it, or it could
/// not be written to), not because of the query.
fn connection_lost(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        ) | DieselError::BrokenTransactionManager
    )
}

/// One attempt at a transaction: its result, or — when the connection turned out to be dead
/// before the caller's work ran — the work back, to run on another connection.
enum Attempt<T, F> {
    Done(Result<T, DbError>),
    Stale(F, DieselError),
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub url: String,
    pub max_connections: usize,
    /// How long a request waits for a free connection (or a new one) before it gets a 503.
    pub acquire_timeout: Duration,
}

/// A handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Arc<PoolOwner>,
}

/// Owns the pool so that dropping it is safe anywhere. deadpool closes each idle connection
/// with `spawn_blocking`, which panics outside a Tokio runtime; the last handle can be dropped
/// on such a thread (an actix worker winding down, a test ending), so give it one there.
struct PoolOwner(Option<Pool>);

impl std::ops::Deref for PoolOwner {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        // Always `Some` until `drop`.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("the pool is only taken in drop"))
    }
}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        let Some(pool) = self.0.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(pool);
            return;
        }
        match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => {
                let _entered = runtime.enter();
                drop(pool);
            }
            // Without a runtime the connections would panic on drop: leak them instead; the
            // process is ending anyway.
            Err(_) => std::mem::forget(pool),
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Db")
            .field("size", &status.size)
            .field("available", &status.available)
            .finish()
    }
}

/// Opens every transaction, in the same round trip as its `BEGIN`: become `paas_app`, scope to
/// one tenant (or none, `''`). `{tenant}` is replaced by a tenant id, which is a UUID.
const SCOPE_SQL: &str = "BEGIN; SELECT set_config('role', 'paas_app', true), \
     set_config('paas.tenant_id', '{tenant}', true)";

/// [`SCOPE_SQL`], and the commit does not wait for the WAL to reach the disk.
const SCOPE_ASYNC_COMMIT_SQL: &str = "BEGIN; SELECT set_config('role', 'paas_app', true), \
     set_config('paas.tenant_id', '{tenant}', true), set_config('synchronous_commit', 'off', true)";

/// Connections of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    pub size: usize,
    pub available: usize,
    pub max_size: usize,
}

/// The operator's transactions: `paas_app`, no tenant, the operator flag.
const OPERATOR_SQL: &str = "BEGIN; SELECT set_config('role', 'paas_app', true), \
     set_config('paas.tenant_id', '{tenant}', true), set_config('paas.operator', 'on', true)";

impl Db {
    /// Builds the pool. No connection is made until the first query, so the server can start
    /// while the database is still coming up.
    pub fn new(config: &DbConfig) -> Result<Self, Error> {
        let manager = PgManager {
            url: config.url.clone(),
        };
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.acquire_timeout))
            .create_timeout(Some(config.acquire_timeout))
            .recycle_timeout(Some(config.acquire_timeout))
            .build()
            .map_err(Error::internal)?;
        Ok(Self {
            pool: Arc::new(PoolOwner(Some(pool))),
        })
    }

    /// Runs `f` in a transaction scoped to `tenant`: row-level security shows it only that
    /// tenant's rows and refuses writes to any other. An `Err` from `f` rolls back.
    pub async fn tenant_tx<T, F>(&self, tenant: TenantId, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        self.scoped_tx(Some(tenant), SCOPE_SQL, f).await
    }

    /// [`Self::tenant_tx`] with an asynchronous commit (`synchronous_commit = off` for this
    /// transaction): the commit returns without waiting for the disk, so it costs a round trip
    /// rather than an fsync. If PostgreSQL itself crashes, the last such commits (at most three
    /// times `wal_writer_delay`, 600 ms by default) can be lost — never half-applied, and never
    /// anything else. Only for rows the platform can do without or rebuild: the run rows of
    /// OpenAI-compatible requests (their billing is the usage ledger, committed normally; a lost
    /// `running` row is swept like any orphan).
    pub async fn tenant_tx_async_commit<T, F>(&self, tenant: TenantId, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        self.scoped_tx(Some(tenant), SCOPE_ASYNC_COMMIT_SQL, f)
            .await
    }

    /// Runs `f` in a transaction with no tenant: every tenant-owned table looks empty. Used
    /// only for the `SECURITY DEFINER` look-ups that find a tenant or key before the tenant is
    /// known.
    pub async fn anonymous_tx<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        self.scoped_tx(None, SCOPE_SQL, f).await
    }

    /// Runs `f` in a transaction as `paas_app` with `paas.operator = on`, which the operator
    /// policies (migration `…_quotas`) open across tenants: tenants and their overrides, counts
    /// of users, agents and sessions, and appending to a tenant's audit log — nothing else.
    /// Only for the platform operator's API and CLI.
    pub async fn operator_tx<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        self.scoped_tx(None, OPERATOR_SQL, f).await
    }

    /// The pool's connections: open, idle and the maximum (for metrics).
    pub fn pool_status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            size: status.size,
            available: status.available,
            max_size: status.max_size,
        }
    }

    /// `SELECT 1` through the pool: is the database answering?
    pub async fn ping(&self) -> Result<(), Error> {
        self.anonymous_tx(|conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn scoped_tx<T, F>(
        &self,
        tenant: Option<TenantId>,
        scope_sql: &'static str,
        f: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        // A `TenantId` prints as a UUID: nothing in it needs quoting.
        let begin = scope_sql.replace(
            "{tenant}",
            &tenant.map(|t| t.to_string()).unwrap_or_default(),
        );
        let mut work = f;
        // Every connection in the pool may have died with a restart of the database: each is
        // tried (and dropped) at most once before the pool opens a fresh one.
        let mut stale = 0;
        loop {
            let conn = self.pool.get().await.map_err(unavailable)?;
            let begin = begin.clone();
            let attempt = conn
                .interact(move |conn| {
                    if AnsiTransactionManager::is_broken_transaction_manager(conn) {
                        return Attempt::Stale(work, DieselError::BrokenTransactionManager);
                    }
                    if let Err(err) = AnsiTransactionManager::begin_transaction_sql(conn, &begin) {
                        // Nothing of the caller's ran: safe to run it on another connection.
                        if connection_lost(&err) {
                            return Attempt::Stale(work, err);
                        }
                        // The BEGIN may have gone through without the scope: end it.
                        let _ =
                            diesel::connection::SimpleConnection::batch_execute(conn, "ROLLBACK");
                        return Attempt::Done(Err(err.into()));
                    }
                    // What `Connection::transaction` does after its BEGIN.
                    let result = match work(conn) {
                        Ok(value) => AnsiTransactionManager::commit_transaction(conn)
                            .map(|()| value)
                            .map_err(DbError::from),
                        Err(err) => match AnsiTransactionManager::rollback_transaction(conn) {
                            Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(err),
                            Err(rollback) => Err(rollback.into()),
                        },
                    };
                    Attempt::Done(result)
                })
                .await
                .map_err(|err| Error::internal(err.to_string()))?;
            match attempt {
                Attempt::Done(result) => {
                    // A connection that broke under the caller's work is not returned either.
                    if matches!(&result, Err(DbError::Query(err)) if connection_lost(err)) {
                        drop(Object::take(conn));
                    }
                    return result.map_err(Error::from);
                }
                Attempt::Stale(back, err) => {
                    // Not returned to the pool.
                    drop(Object::take(conn));
                    stale += 1;
                    if stale > self.pool.status().max_size {
                        return Err(unavailable(err));
                    }
                    work = back;
                }
            }
        }
    }
}
