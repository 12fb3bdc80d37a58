//! The `agent-paas` command line: `serve`, `migrate`, and `tenant` (create, list, show,
//! set-plan, set-quota, suspend, reactivate: the operator API's powers, on the server's own
//! machine).
// The CLI talks to a person on stdout/stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use paas_core::Error;
use paas_models::Plan;
use paas_persistence::{migrations, tenants};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use crate::state::AppState;
use crate::{server, services, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "agent-paas",
    version,
    about = "Agent PaaS: a multi-tenant platform for LLM agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (applies pending migrations first unless --no-migrate).
    Serve {
        /// Do not apply pending migrations at start-up.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations.
    Migrate {
        /// Create the database named in DATABASE_URL first if it does not exist.
        #[arg(long)]
        create_db: bool,
    },
    /// Print the OpenAPI document (JSON) of this build's HTTP API.
    Openapi,
    /// Manage tenants without the API.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PlanArg {
    Free,
    Pro,
    Enterprise,
}

impl From<PlanArg> for Plan {
    fn from(plan: PlanArg) -> Self {
        match plan {
            PlanArg::Free => Plan::Free,
            PlanArg::Pro => Plan::Pro,
            PlanArg::Enterprise => Plan::Enterprise,
        }
    }
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and its first admin.
    Create {
        /// Tenant name (slug: lowercase letters, digits, hyphens).
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        /// The admin's password (or set PAAS_ADMIN_PASSWORD, which keeps it out of `ps`).
        #[arg(long, env = "PAAS_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: String,
        #[arg(long, value_enum, default_value = "free")]
        plan: PlanArg,
        /// Succeed without changes if a tenant with this name exists.
        #[arg(long)]
        if_not_exists: bool,
        /// Also create an agent named `assistant` on the built-in mock model, with every
        /// built-in tool (what `just dev` seeds).
        #[arg(long)]
        with_demo_agent: bool,
    },
    /// List tenants (name, id, plan, status).
    List {
        #[arg(long, default_value_t = 200)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show a tenant's plan, limits and usage (JSON).
    Show {
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
    },
    /// Move a tenant to another plan.
    SetPlan {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_enum)]
        plan: PlanArg,
    },
    /// Override some of a tenant's limits (others keep their current value); `default` returns
    /// one to the plan's value.
    SetQuota {
        #[arg(long)]
        tenant: String,
        #[arg(long, allow_negative_numbers = true)]
        max_users: Option<OverrideArg>,
        #[arg(long, allow_negative_numbers = true)]
        max_agents: Option<OverrideArg>,
        #[arg(long, allow_negative_numbers = true)]
        max_sessions_per_day: Option<OverrideArg>,
        #[arg(long, allow_negative_numbers = true)]
        max_tokens_per_month: Option<OverrideArg>,
        #[arg(long, allow_negative_numbers = true)]
        requests_per_minute: Option<OverrideArg>,
        #[arg(long, allow_negative_numbers = true)]
        key_requests_per_minute: Option<OverrideArg>,
        #[arg(long, allow_negative_numbers = true)]
        max_concurrent_runs: Option<OverrideArg>,
        /// Clear every override first.
        #[arg(long)]
        reset: bool,
    },
    /// Suspend a tenant: its users and keys are refused from their next request.
    Suspend {
        #[arg(long)]
        tenant: String,
    },
    /// Reactivate a suspended tenant.
    Reactivate {
        #[arg(long)]
        tenant: String,
    },
}

/// A limit on the command line: a number, or `default` for the plan's value.
#[derive(Debug, Clone, Copy)]
enum OverrideArg {
    Value(i64),
    Default,
}

impl std::str::FromStr for OverrideArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "default" {
            return Ok(OverrideArg::Default);
        }
        s.parse()
            .map(OverrideArg::Value)
            .map_err(|_| format!("expected a number or `default`, got {s:?}"))
    }
}

fn apply(current: Option<i64>, arg: Option<OverrideArg>) -> Option<i64> {
    match arg {
        None => current,
        Some(OverrideArg::Default) => None,
        Some(OverrideArg::Value(v)) => Some(v),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Openapi) {
        // Needs no configuration, database or runtime.
        println!("{}", crate::openapi::document_pretty_json());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("agent-paas: {err}");
            return ExitCode::from(2);
        }
    };
    let mut telemetry = telemetry::init(config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // A plain multi-threaded Tokio runtime (actix-web runs on it; its workers get their own
    // threads): tasks left at shutdown are dropped inside the runtime, as the pool needs.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("agent-paas: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { no_migrate } => serve(config, !no_migrate).await,
            Command::Migrate { create_db } => migrate(&config, create_db).await,
            Command::Openapi => Ok(()),
            Command::Tenant {
                command:
                    TenantCommand::Create {
                        name,
                        admin_email,
                        admin_password,
                        plan,
                        if_not_exists,
                        with_demo_agent,
                    },
            } => {
                create_tenant(
                    config,
                    &name,
                    &admin_email,
                    SecretString::from(admin_password),
                    plan.into(),
                    if_not_exists,
                    with_demo_agent,
                )
                .await
            }
            Command::Tenant { command } => operate(config, command).await,
        }
    });
    // Runs' spans are exported before exiting (the runtime, and its tasks, are gone by now).
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent-paas: {}: {}", err.code(), err.message());
            let cause = err.cause_chain();
            if !cause.is_empty() {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run_migrations(config: &Config, create_db: bool) -> Result<Vec<String>, Error> {
    let url = config.database_url.expose_secret().to_owned();
    tokio::task::spawn_blocking(move || {
        if create_db && migrations::create_database_if_missing(&url)? {
            tracing::info!("created the database");
        }
        migrations::run_pending(&url)
    })
    .await
    .map_err(Error::internal)?
}

async fn migrate(config: &Config, create_db: bool) -> Result<(), Error> {
    let applied = run_migrations(config, create_db).await?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for name in applied {
            println!("applied {name}");
        }
    }
    Ok(())
}

async fn serve(config: Config, migrate: bool) -> Result<(), Error> {
    if config.generated_secrets.is_empty() {
        tracing::info!(env = ?config.env, "configuration loaded");
    } else {
        tracing::warn!(
            generated = ?config.generated_secrets,
            "no secret configured, using random ones: sessions will not survive a restart (set them in .env)"
        );
    }
    if migrate {
        // The database may still be starting (a fresh compose stack): retry for about 30 s.
        let mut attempt = 0;
        loop {
            match run_migrations(&config, false).await {
                Ok(applied) => {
                    for name in applied {
                        tracing::info!(migration = %name, "applied migration");
                    }
                    break;
                }
                Err(err) if attempt < 15 && err.kind() == paas_core::ErrorKind::Unavailable => {
                    attempt += 1;
                    tracing::warn!(attempt, "database not reachable yet; retrying migrations");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
    let listen = config.listen_addr.clone();
    let state = AppState::new(config)?;
    state.passwords.warm_up().await;
    let listener = TcpListener::bind(&listen)
        .map_err(|err| Error::internal(format!("cannot listen on {listen}: {err}")))?;
    let addr = listener.local_addr().map_err(Error::internal)?;
    let redis = state.redis.clone();
    let runs = state.runs.clone();
    let usage = state.usage.clone();
    // Runs left `running` by a process that died are finished now and then every half lease
    // (their leases must have expired: a replica still renewing keeps its runs).
    runs.spawn_orphan_sweep();
    let server = server::build(state, listener).map_err(Error::internal)?;
    tokio::spawn(stop_on_signal(server.handle(), runs.clone()));
    tracing::info!(%addr, "agent-paas listening on http://{addr}");
    let result = server.await.map_err(Error::internal);
    // Runs outlive requests: let the ones in progress finish (or end them as cancelled) and
    // store them before exiting.
    if runs.active() > 0 {
        tracing::info!(active = runs.active(), "waiting for runs in progress");
        runs.drain(Duration::from_secs(25)).await;
    }
    // Every finished run's row and usage row is written before exit.
    runs.flush_records(Duration::from_secs(10)).await;
    usage.shutdown(Duration::from_secs(10)).await;
    redis.quit().await;
    tracing::info!("agent-paas stopped");
    result
}

/// Stops the server gracefully (finish in-flight requests, at most 30 s) on SIGTERM or SIGINT.
async fn stop_on_signal(handle: actix_web::dev::ServerHandle, runs: crate::runs::RunManager) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => tracing::info!("SIGINT received: shutting down"),
                    _ = terminate.recv() => tracing::info!("SIGTERM received: shutting down"),
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!("interrupt received: shutting down");
    }
    // Dashboard streams get a `shutdown` event and end, so their clients resume on another
    // replica (runs keep publishing their events to Redis while they finish here); then the
    // server stops accepting and waits for the requests still open.
    runs.begin_shutdown();
    handle.stop(true).await;
}

async fn create_tenant(
    config: Config,
    name: &str,
    email: &str,
    password: SecretString,
    plan: Plan,
    if_not_exists: bool,
    with_demo_agent: bool,
) -> Result<(), Error> {
    run_migrations(&config, false).await?;
    let state = AppState::new(config)?;
    let lookup = name.to_owned();
    let existing = state
        .db
        .anonymous_tx(move |conn| tenants::find_by_name(conn, &lookup))
        .await?;
    let admin = match existing {
        Some((tenant_id, _)) if if_not_exists => {
            println!("tenant {name} already exists; not creating it");
            // The demo agent may still be missing (a tenant made before it existed).
            let email = paas_models::validate::email(email)?;
            let user = state
                .db
                .tenant_tx(tenant_id, move |conn| {
                    paas_persistence::users::find_credentials(conn, tenant_id, &email)
                })
                .await?
                .map(|c| c.user);
            match user {
                Some(user) if user.role == paas_core::Role::Admin => user,
                _ => {
                    state.redis.quit().await;
                    return Ok(());
                }
            }
        }
        _ => {
            let (tenant, user) =
                services::accounts::bootstrap_tenant(&state, name, email, password, plan).await?;
            println!(
                "created tenant {} ({}) on the {} plan",
                tenant.name,
                tenant.id,
                tenant.plan.as_str()
            );
            println!("admin: {} ({})", user.email, user.id);
            user
        }
    };
    if with_demo_agent {
        ensure_demo_agent(&state, &admin).await?;
    }
    state.redis.quit().await;
    Ok(())
}

/// A tenant by id or name.
async fn find_tenant(state: &AppState, key: &str) -> Result<paas_core::TenantId, Error> {
    if let Ok(id) = key.parse::<paas_core::TenantId>() {
        return Ok(id);
    }
    let name = key.to_owned();
    state
        .db
        .anonymous_tx(move |conn| tenants::find_by_name(conn, &name))
        .await?
        .map(|(id, _)| id)
        .ok_or_else(|| Error::not_found("tenant"))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(Error::internal)?
    );
    Ok(())
}

/// The operator's subcommands (everything but `create`).
async fn operate(config: Config, command: TenantCommand) -> Result<(), Error> {
    use paas_models::TenantStatus;
    use services::operator;

    let state = AppState::new(config)?;
    let client = services::ClientInfo {
        ip: "cli".to_owned(),
        user_agent: Some("agent-paas tenant".to_owned()),
    };
    let result = match command {
        TenantCommand::Create { .. } => Ok(()),
        TenantCommand::List { limit, offset } => {
            let page = paas_persistence::Page::new(Some(limit), Some(offset));
            let items = operator::list(&state, page).await?;
            println!("{:<32} {:<36} {:<10} status", "name", "id", "plan");
            for t in items {
                println!(
                    "{:<32} {:<36} {:<10} {}",
                    t.name,
                    t.id,
                    t.plan.as_str(),
                    t.status.as_str()
                );
            }
            Ok(())
        }
        TenantCommand::Show { tenant } => {
            let id = find_tenant(&state, &tenant).await?;
            print_json(&operator::show(&state, id).await?)
        }
        TenantCommand::SetPlan { tenant, plan } => {
            let id = find_tenant(&state, &tenant).await?;
            print_json(&operator::change_plan(&state, id, plan.into(), &client).await?)
        }
        TenantCommand::SetQuota {
            tenant,
            max_users,
            max_agents,
            max_sessions_per_day,
            max_tokens_per_month,
            requests_per_minute,
            key_requests_per_minute,
            max_concurrent_runs,
            reset,
        } => {
            let id = find_tenant(&state, &tenant).await?;
            let current = if reset {
                paas_models::QuotaOverrides::default()
            } else {
                operator::show(&state, id).await?.quota.overrides
            };
            let overrides = paas_models::QuotaOverrides {
                max_users: apply(current.max_users, max_users),
                max_agents: apply(current.max_agents, max_agents),
                max_sessions_per_day: apply(current.max_sessions_per_day, max_sessions_per_day),
                max_tokens_per_month: apply(current.max_tokens_per_month, max_tokens_per_month),
                requests_per_minute: apply(current.requests_per_minute, requests_per_minute),
                key_requests_per_minute: apply(
                    current.key_requests_per_minute,
                    key_requests_per_minute,
                ),
                max_concurrent_runs: apply(current.max_concurrent_runs, max_concurrent_runs),
            };
            print_json(&operator::set_overrides(&state, id, overrides, &client).await?)
        }
        TenantCommand::Suspend { tenant } => {
            let id = find_tenant(&state, &tenant).await?;
            print_json(&operator::set_status(&state, id, TenantStatus::Suspended, &client).await?)
        }
        TenantCommand::Reactivate { tenant } => {
            let id = find_tenant(&state, &tenant).await?;
            print_json(&operator::set_status(&state, id, TenantStatus::Active, &client).await?)
        }
    };
    state.redis.quit().await;
    result
}

/// The agent `just dev` seeds: `assistant`, on the mock model, with every built-in tool.
async fn ensure_demo_agent(state: &AppState, admin: &paas_models::User) -> Result<(), Error> {
    let principal = paas_core::Principal {
        tenant_id: admin.tenant_id,
        user_id: admin.id,
        role: paas_core::Role::Admin,
        credential: paas_core::Credential::Session {
            family: paas_core::TokenFamilyId::new(),
        },
    };
    if services::agents::find(state, &principal, "assistant")
        .await
        .is_ok()
    {
        return Ok(());
    }
    let input = services::agents::AgentInput {
        name: Some("assistant".to_owned()),
        display_name: Some("Assistant".to_owned()),
        description: Some(
            "A demo agent on the built-in mock model, with every built-in tool.".to_owned(),
        ),
        system_prompt: Some(
            "You are a helpful assistant. Use your tools when they help.".to_owned(),
        ),
        tools: Some(
            paas_agents::tools::BUILTIN_TOOLS
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        ),
        ..Default::default()
    };
    let client = services::ClientInfo {
        ip: String::new(),
        user_agent: Some("agent-paas CLI".into()),
    };
    let agent = services::agents::create(state, &principal, input, &client).await?;
    println!("agent: {} on the {} model", agent.name, agent.model);
    Ok(())
}
