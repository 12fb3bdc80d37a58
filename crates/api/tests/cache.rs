//! The in-memory cache of API keys, agents and provider clients (`PAAS_CONFIG_CACHE`): a change
//! made on any replica — or by the CLI — takes effect at once on every replica that has cached
//! the old answer, and a replica that cannot hear those changes (Redis down) does not use its
//! cache at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{PrivateRedis, TestApp, expect_error, expect_status, free_port};
use reqwest::{Method, Response, StatusCode};
use serde_json::json;

/// Lists models with an API key (the cheapest call an API key makes).
async fn models(app: &TestApp, key: &str) -> Response {
    app.get("/v1/models", key).send().await.unwrap()
}

/// Uses the key on `app` until `app` has it cached (the cache subscribes to Redis at start-up,
/// and is used only once subscribed).
async fn cached(app: &TestApp, key: &str) {
    let hash = paas_auth::api_key::hash(key);
    for _ in 0..100 {
        expect_status(models(app, key).await, StatusCode::OK).await;
        if app.state.cache.key(&hash).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the key was never cached");
}

/// Polls `app` with the key until it answers `status`; fails after a second.
async fn answers(app: &TestApp, key: &str, status: StatusCode, code: &str) {
    for _ in 0..50 {
        let response = models(app, key).await;
        if response.status() == status {
            expect_error(response, status, code).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = models(app, key).await;
    panic!(
        "the change did not reach the other replica within a second: {} {}",
        last.status(),
        last.text().await.unwrap()
    );
}

async fn two_replicas() -> (TestApp, TestApp) {
    let a = TestApp::new().await;
    let b = TestApp::builder().replica_of(&a).start().await;
    (a, b)
}

#[tokio::test]
async fn a_key_revoked_on_one_replica_is_refused_at_once_by_another_that_cached_it() {
    let (a, b) = two_replicas().await;
    let acme = a.signup("cache-revoke").await;
    let (id, key) = a.with_api_key(&acme.admin, &["chat"]).await;
    cached(&a, &key).await;
    cached(&b, &key).await;
    let response = b
        .delete(&format!("/api/v1/api-keys/{id}"), &acme.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // The replica that made the change forgets at once, without waiting for Redis.
    expect_error(
        models(&b, &key).await,
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;
    answers(&a, &key, StatusCode::UNAUTHORIZED, "api_key_revoked").await;
}

#[tokio::test]
async fn suspending_a_tenant_or_deactivating_a_keys_owner_reaches_every_replica() {
    let (a, b) = two_replicas().await;
    let acme = a.signup("cache-suspend").await;
    let member = a.with_user(&acme.admin, "user").await;
    let (_, member_key) = a.with_api_key(&member, &["chat"]).await;
    let (_, admin_key) = a.with_api_key(&acme.admin, &["chat"]).await;
    cached(&a, &member_key).await;
    cached(&a, &admin_key).await;

    let response = b
        .delete(
            &format!("/api/v1/users/{}", member.user_id),
            &acme.admin.access_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Deactivating a user revokes their keys.
    answers(&a, &member_key, StatusCode::UNAUTHORIZED, "api_key_revoked").await;
    // Other users' keys stay valid (the cache is re-filled from PostgreSQL).
    expect_status(models(&a, &admin_key).await, StatusCode::OK).await;

    cached(&a, &admin_key).await;
    let response = b
        .operator(
            Method::POST,
            &format!("/api/v1/admin/tenants/{}/suspend", acme.id),
        )
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await;
    answers(&a, &admin_key, StatusCode::FORBIDDEN, "tenant_suspended").await;
}

#[tokio::test]
async fn a_plan_change_reaches_the_rate_limit_of_a_cached_key() {
    let (a, b) = two_replicas().await;
    let acme = a.signup("cache-plan").await;
    let (_, key) = a.with_api_key(&acme.admin, &["chat"]).await;
    cached(&a, &key).await;
    // A key limit of 1 request a minute, set on the other replica: the next request on `a`
    // is the key's first in the new limit, the one after it is refused.
    let response = b
        .operator(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{}/quota", acme.id),
        )
        .json(&json!({"key_requests_per_minute": 1}))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await;
    answers(&a, &key, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn an_agent_changed_on_one_replica_is_seen_at_once_by_another() {
    let (a, b) = two_replicas().await;
    let acme = a.signup("cache-agent").await;
    let (_, key) = a.with_api_key(&acme.admin, &["chat"]).await;
    let agent = a
        .agent(
            &acme.admin,
            json!({"name": "bot", "system_prompt": "first"}),
        )
        .await;
    let ask = |app: &TestApp| {
        app.post(
            "/v1/chat/completions",
            &key,
            json!({"model": "bot", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
    };
    expect_status(ask(&a).await.unwrap(), StatusCode::OK).await;
    expect_status(ask(&a).await.unwrap(), StatusCode::OK).await;
    let id = agent["id"].as_str().unwrap();
    let response = b
        .delete(&format!("/api/v1/agents/{id}"), &acme.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for _ in 0..50 {
        let response = ask(&a).await.unwrap();
        if response.status() == StatusCode::NOT_FOUND {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "model_not_found");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the deleted agent was still served a second later");
}

#[tokio::test]
async fn with_the_cache_off_nothing_is_kept() {
    let app = TestApp::builder()
        .env("PAAS_CONFIG_CACHE", "false")
        .start()
        .await;
    let acme = app.signup("cache-off").await;
    let (_, key) = app.with_api_key(&acme.admin, &["chat"]).await;
    for _ in 0..3 {
        expect_status(models(&app, &key).await, StatusCode::OK).await;
    }
    assert!(
        app.state
            .cache
            .key(&paas_auth::api_key::hash(&key))
            .is_none()
    );
}

#[tokio::test]
async fn while_redis_is_down_the_cache_is_not_used_and_changes_still_take_effect() {
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    let app = TestApp::builder()
        .env("REDIS_URL", &format!("redis://127.0.0.1:{port}"))
        .start()
        .await;
    let acme = app.signup("cache-redis-down").await;
    let (id, key) = app.with_api_key(&acme.admin, &["chat"]).await;
    cached(&app, &key).await;
    let hash = paas_auth::api_key::hash(&key);

    redis.stop();
    for _ in 0..100 {
        if app.state.cache.key(&hash).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        app.state.cache.key(&hash).is_none(),
        "the cache was still used after Redis stopped"
    );
    // Keys are still checked (in PostgreSQL), and a revocation made now — which no other
    // replica could hear of — takes effect at once.
    expect_status(models(&app, &key).await, StatusCode::OK).await;
    let response = app
        .delete(&format!("/api/v1/api-keys/{id}"), &acme.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_error(
        models(&app, &key).await,
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;

    // Back again: the cache is used again, starting empty.
    let mut redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    let (_, fresh) = app.with_api_key(&acme.admin, &["chat"]).await;
    let fresh_hash = paas_auth::api_key::hash(&fresh);
    let mut used = false;
    for _ in 0..200 {
        expect_status(models(&app, &fresh).await, StatusCode::OK).await;
        if app.state.cache.key(&fresh_hash).is_some() {
            used = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(used, "the cache was not used again after Redis came back");
    assert!(app.state.cache.key(&hash).is_none());
    redis.stop();
}
