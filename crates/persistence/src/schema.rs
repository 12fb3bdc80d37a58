// @generated automatically by Diesel CLI.

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
    tenant_quotas (tenant_id) {
        tenant_id -> Uuid,
        max_users -> Int4,
        max_agents -> Int4,
        max_sessions_per_day -> Int4,
        max_tokens_per_month -> Int8,
        current_month_tokens -> Int8,
        reset_date -> Nullable<Date>,
        updated_at -> Timestamptz,
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

diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(audit_events -> tenants (tenant_id));
diesel::joinable!(refresh_tokens -> tenants (tenant_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(tenant_quotas -> tenants (tenant_id));
diesel::joinable!(users -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    audit_events,
    refresh_tokens,
    tenant_quotas,
    tenants,
    users,
);
