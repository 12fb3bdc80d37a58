//! Request extractors: the authenticated [`Auth`] principal and the caller's [`ClientInfo`].
//!
//! Credentials are accepted as `Authorization: Bearer <jwt>`, `Authorization: Bearer <api key>`
//! or `X-API-Key: <api key>`, all through [`Auth`], so every route authenticates the same way.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, HeaderMap, USER_AGENT};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use paas_auth::api_key;
use paas_core::{Error, Principal};

use crate::error::ApiError;
use crate::services::ClientInfo;
use crate::services::authn::{self, Presented};
use crate::services::quota;
use crate::state::AppState;

/// The authenticated caller. Extracting it checks the credential and the user's and tenant's
/// status, then counts the request against the tenant's (and API key's) rate limit, or answers
/// 401/403/429 with a JSON error. The rate-limit window is kept in the request's extensions for
/// the `RateLimit-*` response headers.
#[derive(Clone, Copy, Debug)]
pub struct Auth(pub Principal);

/// The authenticated caller of a route that starts a run, and the tenant's plan. No rate limit
/// is counted here: the run's admission counts it together with its token reservation, in one
/// Redis round trip (see [`crate::services::quota::admit_run`]).
#[derive(Clone, Copy, Debug)]
pub struct ChatAuth(pub Principal, pub paas_models::TenantPlan);

fn missing() -> Error {
    Error::unauthenticated(
        "missing_credentials",
        "authenticate with `Authorization: Bearer <token or API key>` or `X-API-Key`",
    )
}

/// Finds the credential in the headers without checking it.
pub fn presented_credential(headers: &HeaderMap) -> Result<Presented, Error> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            Error::unauthenticated(
                "invalid_token",
                "the Authorization header is not valid text",
            )
        })?;
        let (scheme, credential) = value.trim().split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::unauthenticated(
                "unsupported_auth_scheme",
                "use `Authorization: Bearer <token or API key>`",
            ));
        }
        let credential = credential.trim();
        if credential.is_empty() {
            return Err(missing());
        }
        return Ok(if credential.starts_with(api_key::KEY_PREFIX) {
            Presented::ApiKey(credential.to_owned())
        } else {
            Presented::AccessToken(credential.to_owned())
        });
    }
    if let Some(value) = headers.get("x-api-key") {
        let key = value
            .to_str()
            .map_err(|_| Error::unauthenticated("invalid_api_key", "the API key is not valid"))?
            .trim();
        if key.is_empty() {
            return Err(missing());
        }
        return Ok(Presented::ApiKey(key.to_owned()));
    }
    Err(missing())
}

pub fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, Error> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Error::internal("application state is not configured"))
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = app_state(req);
        let presented = presented_credential(req.headers());
        let req = req.clone();
        Box::pin(async move {
            let state = state?;
            let (principal, plan) = authn::authenticate(&state, presented?).await?;
            match count_request(&req, &state, &principal, &plan, None).await {
                Some(refused) => Err(refused.into()),
                None => Ok(Auth(principal)),
            }
        })
    }
}

impl FromRequest for ChatAuth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = app_state(req);
        let presented = presented_credential(req.headers());
        Box::pin(async move {
            let state = state?;
            let (principal, plan) = authn::authenticate(&state, presented?).await?;
            Ok(ChatAuth(principal, plan))
        })
    }
}

/// The platform operator, authenticated by `Authorization: Bearer <PAAS_OPERATOR_TOKEN>`
/// (compared in constant time). Without a configured token the operator API is off.
#[derive(Clone, Copy, Debug)]
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(operator(req).map_err(ApiError::from))
    }
}

fn operator(req: &HttpRequest) -> Result<Operator, Error> {
    let state = app_state(req)?;
    let Some(expected) = &state.config.operator_token else {
        return Err(Error::forbidden(
            "operator_api_disabled",
            "the operator API is off; set PAAS_OPERATOR_TOKEN on the server to enable it",
        ));
    };
    let invalid = || {
        Error::unauthenticated(
            "invalid_operator_token",
            "authenticate with `Authorization: Bearer <PAAS_OPERATOR_TOKEN>`",
        )
    };
    if bearer_is(req, expected) {
        Ok(Operator)
    } else {
        Err(invalid())
    }
}

/// Does the request carry `Authorization: Bearer <expected>`? Compared in constant time: for
/// the platform's own static tokens (operator, metrics), not tenants' credentials.
pub fn bearer_is(req: &HttpRequest, expected: &secrecy::SecretString) -> bool {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    let expected = secrecy::ExposeSecret::expose_secret(expected).trim();
    subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), expected.as_bytes()).into()
}

/// Records a request's rate-limit outcome for the response headers, counting the request first
/// unless its run's admission already did (`admitted`). So a chat request that ended before its
/// admission (a bad body, no permission, an unknown agent) is counted too: no request escapes
/// the rate limits. Returns the 429 if the count refuses it.
pub async fn count_request(
    req: &HttpRequest,
    state: &AppState,
    principal: &Principal,
    plan: &paas_models::TenantPlan,
    admitted: Option<paas_quota::RateOutcome>,
) -> Option<Error> {
    let (outcome, refused) = match admitted {
        Some(outcome) => (outcome, None),
        None => match quota::check_rate(state, principal, plan).await {
            Ok(outcome) => (outcome, None),
            Err((err, outcome)) => (outcome, Some(err)),
        },
    };
    req.extensions_mut().insert(outcome);
    refused
}

/// Counts a request that has not been counted yet: one that never reached its run's admission
/// (refused before it, or answered from an idempotency key). Returns the 429 if the count
/// refuses it.
pub async fn count_if_uncounted(
    req: &HttpRequest,
    state: &AppState,
    principal: &Principal,
    plan: &paas_models::TenantPlan,
) -> Option<Error> {
    if req.extensions().get::<paas_quota::RateOutcome>().is_some() {
        return None;
    }
    count_request(req, state, principal, plan, None).await
}

/// Middleware: `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` on every response
/// to a request that was counted against a rate limit (the IETF draft's fields, in seconds).
pub async fn rate_limit_headers(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let window = res
        .request()
        .extensions()
        .get::<paas_quota::RateOutcome>()
        .map(|o| o.window);
    if let Some(window) = window {
        let headers = res.headers_mut();
        let reset = window.reset.as_millis().div_ceil(1000);
        for (name, value) in [
            ("ratelimit-limit", window.limit.max(0).to_string()),
            ("ratelimit-remaining", window.remaining.max(0).to_string()),
            ("ratelimit-reset", reset.to_string()),
        ] {
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&value) {
                headers.insert(
                    actix_web::http::header::HeaderName::from_static(name),
                    value,
                );
            }
        }
    }
    Ok(res)
}

/// The client's address and user agent. The address is the TCP peer unless
/// `PAAS_TRUST_PROXY_HEADERS` says a proxy in front sets `Forwarded`/`X-Forwarded-For`.
impl FromRequest for ClientInfo {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let trust_proxy = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|state| state.config.trust_proxy_headers);
        let ip = if trust_proxy {
            req.connection_info().realip_remote_addr().map(strip_port)
        } else {
            req.peer_addr().map(|addr| addr.ip().to_string())
        };
        let user_agent = req
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect());
        std::future::ready(Ok(ClientInfo {
            ip: ip.unwrap_or_default(),
            user_agent,
        }))
    }
}

/// `203.0.113.7:5678` → `203.0.113.7`; `[2001:db8::1]:443` → `2001:db8::1`; bare addresses
/// pass through.
fn strip_port(addr: &str) -> String {
    if let Ok(socket) = addr.parse::<std::net::SocketAddr>() {
        return socket.ip().to_string();
    }
    addr.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                actix_web::http::header::HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn credentials_are_found_in_either_header() {
        assert!(matches!(
            presented_credential(&headers(&[("authorization", "Bearer eyJ.a.b")])),
            Ok(Presented::AccessToken(t)) if t == "eyJ.a.b"
        ));
        assert!(matches!(
            presented_credential(&headers(&[("authorization", "bearer ap_xyz")])),
            Ok(Presented::ApiKey(k)) if k == "ap_xyz"
        ));
        assert!(matches!(
            presented_credential(&headers(&[("x-api-key", " ap_xyz ")])),
            Ok(Presented::ApiKey(k)) if k == "ap_xyz"
        ));
    }

    #[test]
    fn bad_headers_are_clear_401s() {
        for (pairs, code) in [
            (vec![], "missing_credentials"),
            (
                vec![("authorization", "Basic dXNlcjpwYXNz")],
                "unsupported_auth_scheme",
            ),
            (vec![("authorization", "Bearer ")], "missing_credentials"),
            (vec![("authorization", "Bearer")], "missing_credentials"),
            (vec![("x-api-key", "")], "missing_credentials"),
        ] {
            let err = presented_credential(&headers(&pairs)).err().unwrap();
            assert_eq!(err.code(), code, "{pairs:?}");
        }
    }

    #[test]
    fn ports_are_stripped_from_client_addresses() {
        assert_eq!(strip_port("203.0.113.7:5678"), "203.0.113.7");
        assert_eq!(strip_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(strip_port("203.0.113.7"), "203.0.113.7");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
    }
}
