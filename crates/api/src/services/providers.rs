//! Model providers: the tenant's own credentials (admins manage them; API keys are encrypted at
//! rest and never returned), the platform's defaults from the environment, the built-in mock,
//! and a cache of ready clients (one connection pool per provider, not per request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use paas_core::{Error, Principal, ProviderId, TenantId};
use paas_llm::{HttpPolicy, Provider as LlmProvider, ProviderKind as LlmKind};
use paas_models::{AgentProvider, AuditAction, Provider, ProviderKind};
use paas_net::OutboundPolicy;
use paas_persistence::{agents, audit, providers};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::config::Config;
use crate::services::{AuditContext, ClientInfo};
use crate::state::AppState;

fn llm_kind(kind: ProviderKind) -> LlmKind {
    match kind {
        ProviderKind::Openai => LlmKind::OpenAi,
        ProviderKind::Glm => LlmKind::Glm,
        ProviderKind::Anthropic => LlmKind::Anthropic,
        ProviderKind::Mock => LlmKind::Mock,
    }
}

fn build_error(err: paas_llm::LlmError) -> Error {
    Error::bad_request("invalid_provider", err.client_message())
}

/// Clients of tenant providers, with the `updated_at` they were built from.
type ClientCache = HashMap<ProviderId, (DateTime<Utc>, Arc<dyn LlmProvider>)>;

/// Ready provider clients.
#[derive(Debug)]
pub struct ProviderRegistry {
    mock: Arc<dyn LlmProvider>,
    platform: HashMap<ProviderKind, Arc<dyn LlmProvider>>,
    tenant: Mutex<ClientCache>,
    http: HttpPolicy,
    outbound: OutboundPolicy,
}

impl ProviderRegistry {
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        let http = HttpPolicy {
            connect_timeout: config.upstream_connect_timeout,
            first_byte_timeout: config.upstream_first_byte_timeout,
            idle_timeout: config.upstream_idle_timeout,
            max_retries: config.upstream_max_retries,
            ..HttpPolicy::default()
        };
        let outbound = OutboundPolicy {
            allow_private: config.allow_private_upstreams,
            exempt: Vec::new(),
        };
        let mock = paas_llm::build(
            LlmKind::Mock,
            None,
            None,
            &http,
            &outbound,
            config.mock_chunk_delay,
        )
        .map_err(build_error)?;
        let mut platform = HashMap::new();
        let defaults = [
            (
                ProviderKind::Openai,
                config.openai_api_key.clone(),
                Some(config.openai_base_url.clone()),
            ),
            (ProviderKind::Glm, config.zhipuai_api_key.clone(), None),
            (
                ProviderKind::Anthropic,
                config.anthropic_api_key.clone(),
                None,
            ),
        ];
        for (kind, key, base) in defaults {
            let Some(key) = key else { continue };
            let base = base
                .map(|b| url::Url::parse(&b))
                .transpose()
                .map_err(|err| {
                    Error::internal(format!("platform {} base URL: {err}", kind.as_str()))
                })?;
            let client = paas_llm::build(
                llm_kind(kind),
                base,
                Some(key),
                &http,
                &outbound,
                config.mock_chunk_delay,
            )
            .map_err(|err| {
                Error::internal(format!("platform provider {}: {err}", kind.as_str()))
            })?;
            platform.insert(kind, client);
        }
        Ok(Self {
            mock,
            platform,
            tenant: Mutex::new(HashMap::new()),
            http,
            outbound,
        })
    }

    pub fn outbound(&self) -> &OutboundPolicy {
        &self.outbound
    }

    /// Whether the operator configured this platform provider.
    pub fn platform_available(&self, kind: ProviderKind) -> bool {
        self.platform.contains_key(&kind)
    }

    /// The client an agent's provider setting names, and its kind's name.
    pub async fn resolve(
        &self,
        state: &AppState,
        tenant: TenantId,
        provider: AgentProvider,
    ) -> Result<(Arc<dyn LlmProvider>, &'static str), Error> {
        match provider {
            AgentProvider::Mock => Ok((Arc::clone(&self.mock), "mock")),
            AgentProvider::Platform(kind) => self
                .platform
                .get(&kind)
                .map(|client| (Arc::clone(client), kind.as_str()))
                .ok_or_else(|| not_configured(kind)),
            AgentProvider::Tenant(id) => {
                if let Some(cached) = state.cache.provider(tenant, id) {
                    return Ok(cached);
                }
                let stamp = state.cache.stamp();
                let found = state
                    .db
                    .tenant_tx(tenant, move |conn| {
                        providers::get_with_secret(conn, tenant, id)
                    })
                    .await?
                    .ok_or_else(|| {
                        Error::conflict("provider_missing", "the agent's provider no longer exists")
                    })?;
                let (provider, secret) = found;
                if let Some((_, client)) = self
                    .cache()
                    .get(&id)
                    .filter(|(at, _)| *at == provider.updated_at)
                {
                    let resolved = (Arc::clone(client), provider.kind.as_str());
                    state.cache.put_provider(stamp, tenant, id, &resolved);
                    return Ok(resolved);
                }
                let key = secret
                    .map(|s| state.cipher.decrypt(&s, &secret_context(tenant, id)))
                    .transpose()?;
                let client = self.build(&provider, key)?;
                self.cache()
                    .insert(id, (provider.updated_at, Arc::clone(&client)));
                let resolved = (client, provider.kind.as_str());
                state.cache.put_provider(stamp, tenant, id, &resolved);
                Ok(resolved)
            }
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ClientCache> {
        self.tenant
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn build(
        &self,
        provider: &Provider,
        key: Option<SecretString>,
    ) -> Result<Arc<dyn LlmProvider>, Error> {
        let base = provider
            .base_url
            .as_deref()
            .map(url::Url::parse)
            .transpose()
            .map_err(|err| Error::internal(format!("stored base URL: {err}")))?;
        paas_llm::build(
            llm_kind(provider.kind),
            base,
            key,
            &self.http,
            &self.outbound,
            std::time::Duration::ZERO,
        )
        .map_err(|err| {
            Error::conflict(
                "provider_misconfigured",
                format!(
                    "the agent's provider cannot be used: {}",
                    err.client_message()
                ),
            )
        })
    }

    fn forget(&self, id: ProviderId) {
        self.cache().remove(&id);
    }
}

fn not_configured(kind: ProviderKind) -> Error {
    Error::bad_request(
        "provider_not_configured",
        format!(
            "the platform provider {} is not configured on this server; use \"mock\" or one of your own providers",
            kind.as_str()
        ),
    )
}

/// Checks that an agent may use `provider` now.
pub async fn check_agent_provider(
    state: &AppState,
    tenant: TenantId,
    provider: AgentProvider,
) -> Result<(), Error> {
    match provider {
        AgentProvider::Mock => Ok(()),
        AgentProvider::Platform(kind) if state.providers.platform_available(kind) => Ok(()),
        AgentProvider::Platform(kind) => Err(not_configured(kind)),
        AgentProvider::Tenant(id) => state
            .db
            .tenant_tx(tenant, move |conn| providers::get(conn, tenant, id))
            .await?
            .map(|_| ())
            .ok_or_else(|| {
                Error::validation("provider_id", "no provider with this id in your tenant")
            }),
    }
}

/// What an encrypted key is bound to: its tenant and row.
fn secret_context(tenant: TenantId, id: ProviderId) -> Vec<u8> {
    format!("provider-key:{tenant}:{id}").into_bytes()
}

fn last4(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

async fn check_base_url(state: &AppState, raw: &str) -> Result<String, Error> {
    let url = url::Url::parse(raw.trim())
        .map_err(|_| Error::validation("base_url", "base_url must be an absolute http(s) URL"))?;
    if url.username() != "" || url.password().is_some() {
        return Err(Error::validation(
            "base_url",
            "base_url must not contain credentials; use api_key",
        ));
    }
    let policy = state.providers.outbound();
    let refused = |err: paas_net::NetError| {
        Error::bad_request(
            "blocked_base_url",
            format!(
                "base_url is not allowed: {err}. Loopback, private, link-local and metadata addresses \
                 are refused unless the operator sets PAAS_ALLOW_PRIVATE_UPSTREAMS"
            ),
        )
    };
    match paas_net::resolve_checked(&url, policy).await {
        Ok(_) => {}
        // A name that does not resolve now is accepted: every connection is checked again.
        Err(paas_net::NetError::Resolution(_)) => {
            paas_net::check_url(&url, policy).map_err(refused)?
        }
        Err(err) => return Err(refused(err)),
    }
    Ok(url.to_string().trim_end_matches('/').to_owned())
}

fn check_default_model(model: &str) -> Result<String, Error> {
    paas_models::agent::validate_model(model).map_err(|_| {
        Error::validation(
            "default_model",
            "default_model must be 1-200 characters without control characters",
        )
    })
}

/// What creating a provider asks for.
#[derive(Debug)]
pub struct NewProviderInput {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    pub api_key: Option<SecretString>,
    pub default_model: Option<String>,
}

pub async fn list(state: &AppState, principal: &Principal) -> Result<Vec<Provider>, Error> {
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| providers::list(conn, tenant))
        .await
}

pub async fn get(
    state: &AppState,
    principal: &Principal,
    id: ProviderId,
) -> Result<Provider, Error> {
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| providers::get(conn, tenant, id))
        .await?
        .ok_or_else(|| Error::not_found("provider"))
}

pub async fn create(
    state: &AppState,
    principal: &Principal,
    input: NewProviderInput,
    client: &ClientInfo,
) -> Result<Provider, Error> {
    let name = paas_models::agent::validate_slug("name", &input.name)?;
    if input.kind == ProviderKind::Mock {
        if input.base_url.is_some() {
            return Err(Error::validation(
                "base_url",
                "the mock provider takes no base_url",
            ));
        }
        if input.api_key.is_some() {
            return Err(Error::validation(
                "provider_key",
                "the mock provider takes no api_key",
            ));
        }
    }
    let base_url = match &input.base_url {
        Some(raw) => Some(check_base_url(state, raw).await?),
        None => None,
    };
    let api_key = input
        .api_key
        .filter(|k| !k.expose_secret().trim().is_empty());
    if api_key.is_none() && llm_kind(input.kind).requires_api_key() {
        return Err(Error::validation(
            "provider_key",
            format!("a {} provider needs an api_key", input.kind.as_str()),
        ));
    }
    if let Some(key) = &api_key {
        check_api_key(key)?;
    }
    let default_model = input
        .default_model
        .as_deref()
        .map(check_default_model)
        .transpose()?;
    let tenant = principal.tenant_id;
    let id = ProviderId::new();
    let ciphertext = api_key
        .as_ref()
        .map(|k| {
            state
                .cipher
                .encrypt(k.expose_secret().trim(), &secret_context(tenant, id))
        })
        .transpose()?;
    let key_last4 = api_key.as_ref().map(|k| last4(k.expose_secret().trim()));
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let kind = input.kind;
    state
        .db
        .tenant_tx(tenant, move |conn| {
            let provider = providers::insert(
                conn,
                &providers::NewProvider {
                    id,
                    tenant_id: tenant,
                    name: &name,
                    kind,
                    base_url: base_url.as_deref(),
                    api_key_ciphertext: ciphertext.as_deref(),
                    api_key_last4: key_last4.as_deref(),
                    default_model: default_model.as_deref(),
                    now,
                },
            )?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::ProviderCreated,
                    Some(("provider", id.to_string())),
                    json!({"name": provider.name, "kind": provider.kind, "base_url": provider.base_url}),
                ),
            )?;
            Ok(provider)
        })
        .await
}

fn check_api_key(key: &SecretString) -> Result<(), Error> {
    let key = key.expose_secret().trim();
    if key.len() > 1024 || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::validation(
            "provider_key",
            "api_key must be at most 1024 characters without spaces",
        ));
    }
    Ok(())
}

/// Changes to a provider: `None` keeps a field; an empty string clears `base_url`,
/// `default_model` or `api_key`.
#[derive(Debug, Default)]
pub struct ProviderUpdate {
    pub name: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<SecretString>,
    pub default_model: Option<String>,
}

pub async fn update(
    state: &AppState,
    principal: &Principal,
    id: ProviderId,
    update: ProviderUpdate,
    client: &ClientInfo,
) -> Result<Provider, Error> {
    let tenant = principal.tenant_id;
    let before = get(state, principal, id).await?;
    let mut changes = providers::ProviderChanges::default();
    let mut changed: Vec<&str> = Vec::new();
    if let Some(name) = &update.name {
        changes.name = Some(paas_models::agent::validate_slug("name", name)?);
        changed.push("name");
    }
    if let Some(raw) = &update.base_url {
        if before.kind == ProviderKind::Mock && !raw.is_empty() {
            return Err(Error::validation(
                "base_url",
                "the mock provider takes no base_url",
            ));
        }
        changes.base_url = Some(if raw.trim().is_empty() {
            None
        } else {
            Some(check_base_url(state, raw).await?)
        });
        changed.push("base_url");
    }
    if let Some(key) = &update.api_key {
        let key_text = key.expose_secret().trim();
        if key_text.is_empty() {
            if llm_kind(before.kind).requires_api_key() {
                return Err(Error::validation(
                    "provider_key",
                    format!("a {} provider needs an api_key", before.kind.as_str()),
                ));
            }
            changes.api_key_ciphertext = Some(None);
            changes.api_key_last4 = Some(None);
        } else {
            if before.kind == ProviderKind::Mock {
                return Err(Error::validation(
                    "provider_key",
                    "the mock provider takes no api_key",
                ));
            }
            check_api_key(key)?;
            changes.api_key_ciphertext = Some(Some(
                state
                    .cipher
                    .encrypt(key_text, &secret_context(tenant, id))?,
            ));
            changes.api_key_last4 = Some(Some(last4(key_text)));
        }
        changed.push("api_key");
    }
    if let Some(model) = &update.default_model {
        changes.default_model = Some(if model.trim().is_empty() {
            None
        } else {
            Some(check_default_model(model)?)
        });
        changed.push("default_model");
    }
    if changed.is_empty() {
        return Ok(before);
    }
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let fields: Vec<String> = changed.iter().map(|s| (*s).to_owned()).collect();
    let updated = state
        .db
        .tenant_tx(tenant, move |conn| {
            let updated = providers::update(conn, tenant, id, &changes, now)?
                .ok_or_else(|| Error::not_found("provider"))?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::ProviderUpdated,
                    Some(("provider", id.to_string())),
                    json!({"changed": fields}),
                ),
            )?;
            Ok(updated)
        })
        .await?;
    state.providers.forget(id);
    state.cache.invalidate(tenant).await;
    Ok(updated)
}

/// Deletes a provider no live agent uses (409 `provider_in_use` otherwise).
pub async fn delete(
    state: &AppState,
    principal: &Principal,
    id: ProviderId,
    client: &ClientInfo,
) -> Result<(), Error> {
    let tenant = principal.tenant_id;
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    state
        .db
        .tenant_tx(tenant, move |conn| {
            let provider =
                providers::get(conn, tenant, id)?.ok_or_else(|| Error::not_found("provider"))?;
            if agents::uses_provider(conn, tenant, id)? {
                return Err(Error::conflict(
                    "provider_in_use",
                    "agents still use this provider; point them at another provider first",
                )
                .into());
            }
            agents::detach_deleted(conn, tenant, id)?;
            providers::delete(conn, tenant, id)?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::ProviderDeleted,
                    Some(("provider", id.to_string())),
                    json!({"name": provider.name}),
                ),
            )?;
            Ok(())
        })
        .await?;
    state.providers.forget(id);
    state.cache.invalidate(tenant).await;
    Ok(())
}
