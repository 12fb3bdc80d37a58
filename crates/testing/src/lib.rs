#![doc = include_str!("../README.md")]
// Test support: failing loudly with a message is the right behaviour here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Bool, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

/// The server the tests create their databases on.
pub fn server_url() -> String {
    std::env::var("PAAS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn url_for(database: &str) -> String {
    let mut url = url::Url::parse(&server_url()).expect("PAAS_TEST_DATABASE_URL is not a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

fn connect(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|err| {
        panic!("cannot connect to PostgreSQL for tests ({err}); is it running? (`just services`)")
    })
}

/// A hash of every migration file, so a changed migration gets a fresh template.
fn migrations_hash() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../persistence/migrations");
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("migrations directory is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file)
            .expect("migration file is readable")
            .hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

fn database_exists(conn: &mut PgConnection, name: &str) -> bool {
    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<Text, _>(name)
        .get_result::<Exists>(conn)
        .expect("query pg_database")
        .exists
}

/// Makes sure the migrated template exists and returns its name.
fn ensure_template(admin: &mut PgConnection) -> String {
    let template = format!("paas_tpl_{}", migrations_hash());
    // Serialise template creation across test processes.
    admin
        .batch_execute("SELECT pg_advisory_lock(7265746573740001)")
        .expect("advisory lock");
    if !database_exists(admin, &template) {
        let building = format!("{template}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .expect("drop stale template");
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .expect("create template");
        paas_persistence::migrations::run_pending(&url_for(&building))
            .unwrap_or_else(|err| panic!("migrating the test template failed: {err:?}"));
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .expect("rename template");
    }
    admin
        .batch_execute("SELECT pg_advisory_unlock(7265746573740001)")
        .expect("advisory unlock");
    template
}

/// A database of its own for one test, dropped with the value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh, fully migrated database.
    pub fn new() -> Self {
        let mut admin = connect(&server_url());
        let template = ensure_template(&mut admin);
        let name = format!("paas_test_{}", uuid::Uuid::new_v4().simple());
        // Concurrent clones of one template can briefly collide; retry a few times.
        let mut attempt = 0;
        loop {
            match admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")) {
                Ok(()) => break,
                Err(err) if attempt < 20 => {
                    attempt += 1;
                    eprintln!("retrying test database creation: {err}");
                    std::thread::sleep(Duration::from_millis(50 * attempt));
                }
                Err(err) => panic!("cannot create test database: {err}"),
            }
        }
        Self {
            url: url_for(&name),
            name,
        }
    }

    /// Connection URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A direct connection as the connecting (owner) role, bypassing the `paas_app` scoping:
    /// for tests that inspect what was really written.
    pub fn owner_connection(&self) -> PgConnection {
        connect(&self.url)
    }

    /// Inserts, as the owner, a tenant named `name` with an admin user (`a@<name>.test`) and an
    /// agent on the mock model, under the given ids: the rows a run needs.
    pub fn seed_tenant(&self, tenant: &str, name: &str, user: &str, agent: &str) {
        self.owner_connection()
            .batch_execute(&format!(
                "INSERT INTO tenants (id, name, display_name) VALUES ('{tenant}', '{name}', '{name}');
                 INSERT INTO users (id, tenant_id, email, display_name, password_hash, role)
                     VALUES ('{user}', '{tenant}', 'a@{name}.test', 'a', 'x', 'admin');
                 INSERT INTO agents (id, tenant_id, name, display_name, builtin_provider, model,
                                     max_tokens, max_steps, timeout_seconds)
                     VALUES ('{agent}', '{tenant}', 'a', 'a', 'mock', 'mock', 10, 1, 10);"
            ))
            .expect("cannot seed a tenant");
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&server_url()) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A Redis key prefix of its own for one test.
pub fn redis_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}
