// @generated automatically by Diesel CLI.

diesel::table! {
    agents (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        #[max_length = 63]
        name -> Varchar,
        #[max_length = 200]
        display_name -> Varchar,
        #[max_length = 2000]
        description -> Varchar,
        system_prompt -> Text,
        provider_id -> Nullable<Uuid>,
        #[max_length = 20]
        builtin_provider -> Nullable<Varchar>,
        #[max_length = 200]
        model -> Varchar,
        temperature -> Nullable<Float4>,
        max_tokens -> Int4,
        tools -> Jsonb,
        max_steps -> Int4,
        timeout_seconds -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        key_hash -> Bytea,
        #[max_length = 16]
        prefix -> Varchar,
        #[max_length = 100]
        name -> Varchar,
        scopes -> Jsonb,
        expires_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        actor_user_id -> Nullable<Uuid>,
        actor_api_key_id -> Nullable<Uuid>,
        #[max_length = 64]
        action -> Varchar,
        #[max_length = 32]
        target_type -> Nullable<Varchar>,
        #[max_length = 64]
        target_id -> Nullable<Varchar>,
        #[max_length = 64]
        ip -> Nullable<Varchar>,
        #[max_length = 512]
        user_agent -> Nullable<Varchar>,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    chat_sessions (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        agent_id -> Uuid,
        #[max_length = 200]
        title -> Varchar,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (tenant_id, user_id, key) {
        tenant_id -> Uuid,
        user_id -> Uuid,
        #[max_length = 255]
        key -> Varchar,
        attempt -> Uuid,
        #[max_length = 16]
        request_method -> Varchar,
        #[max_length = 512]
        request_path -> Varchar,
        request_hash -> Bytea,
        status -> Nullable<Int2>,
        response_headers -> Nullable<Jsonb>,
        response_body -> Nullable<Bytea>,
        run_id -> Nullable<Uuid>,
        stream -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        locked_until -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        session_id -> Uuid,
        run_id -> Nullable<Uuid>,
        #[max_length = 16]
        role -> Varchar,
        content -> Text,
        reasoning -> Text,
        tool_calls -> Jsonb,
        #[max_length = 200]
        tool_call_id -> Nullable<Varchar>,
        #[max_length = 64]
        tool_name -> Nullable<Varchar>,
        is_error -> Bool,
        prompt_tokens -> Int4,
        completion_tokens -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    providers (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        #[max_length = 63]
        name -> Varchar,
        #[max_length = 20]
        kind -> Varchar,
        #[max_length = 2048]
        base_url -> Nullable<Varchar>,
        api_key_ciphertext -> Nullable<Bytea>,
        #[max_length = 4]
        api_key_last4 -> Nullable<Varchar>,
        #[max_length = 200]
        default_model -> Nullable<Varchar>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        family_id -> Uuid,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    runs (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        session_id -> Nullable<Uuid>,
        user_id -> Uuid,
        api_key_id -> Nullable<Uuid>,
        agent_id -> Uuid,
        #[max_length = 16]
        source -> Varchar,
        #[max_length = 16]
        status -> Varchar,
        #[max_length = 20]
        provider -> Varchar,
        #[max_length = 200]
        model -> Varchar,
        steps -> Int4,
        prompt_tokens -> Int4,
        completion_tokens -> Int4,
        usage_estimated -> Bool,
        #[max_length = 64]
        error_code -> Nullable<Varchar>,
        #[max_length = 1000]
        error_message -> Nullable<Varchar>,
        #[max_length = 32]
        limit_reason -> Nullable<Varchar>,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        lease_owner -> Nullable<Uuid>,
        lease_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    tenant_daily_usage (tenant_id, day) {
        tenant_id -> Uuid,
        day -> Date,
        sessions -> Int4,
    }
}

diesel::table! {
    tenant_quotas (tenant_id) {
        tenant_id -> Uuid,
        max_users -> Nullable<Int4>,
        max_agents -> Nullable<Int4>,
        max_sessions_per_day -> Nullable<Int4>,
        max_tokens_per_month -> Nullable<Int8>,
        updated_at -> Timestamptz,
        requests_per_minute -> Nullable<Int4>,
        key_requests_per_minute -> Nullable<Int4>,
        max_concurrent_runs -> Nullable<Int4>,
    }
}

diesel::table! {
    tenants (id) {
        id -> Uuid,
        #[max_length = 63]
        name -> Varchar,
        #[max_length = 200]
        display_name -> Varchar,
        #[max_length = 20]
        plan -> Varchar,
        #[max_length = 20]
        status -> Varchar,
        settings -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    usage_records (run_id) {
        run_id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        api_key_id -> Nullable<Uuid>,
        agent_id -> Uuid,
        #[max_length = 16]
        source -> Varchar,
        #[max_length = 20]
        provider -> Varchar,
        #[max_length = 200]
        model -> Varchar,
        #[max_length = 16]
        status -> Varchar,
        prompt_tokens -> Int4,
        completion_tokens -> Int4,
        usage_estimated -> Bool,
        duration_ms -> Int4,
        started_at -> Timestamptz,
        finished_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        #[max_length = 254]
        email -> Varchar,
        #[max_length = 100]
        display_name -> Varchar,
        #[max_length = 255]
        password_hash -> Varchar,
        #[max_length = 20]
        role -> Varchar,
        #[max_length = 20]
        status -> Varchar,
        last_login_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(agents -> tenants (tenant_id));
diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(audit_events -> tenants (tenant_id));
diesel::joinable!(chat_sessions -> tenants (tenant_id));
diesel::joinable!(idempotency_keys -> tenants (tenant_id));
diesel::joinable!(messages -> tenants (tenant_id));
diesel::joinable!(providers -> tenants (tenant_id));
diesel::joinable!(refresh_tokens -> tenants (tenant_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(runs -> chat_sessions (session_id));
diesel::joinable!(runs -> tenants (tenant_id));
diesel::joinable!(tenant_daily_usage -> tenants (tenant_id));
diesel::joinable!(tenant_quotas -> tenants (tenant_id));
diesel::joinable!(usage_records -> tenants (tenant_id));
diesel::joinable!(users -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    agents,
    api_keys,
    audit_events,
    chat_sessions,
    idempotency_keys,
    messages,
    providers,
    refresh_tokens,
    runs,
    tenant_daily_usage,
    tenant_quotas,
    tenants,
    usage_records,
    users,
);
