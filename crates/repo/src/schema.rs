// @generated automatically by Diesel CLI.

diesel::table! {
    account_tokens (token_hash) {
        token_hash -> Text,
        user_id -> Int8,
        purpose -> Text,
        target -> Nullable<Text>,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    activity_event_keys (user_id, event_id) {
        user_id -> Text,
        event_id -> Text,
        occurred_at -> Timestamptz,
    }
}

diesel::table! {
    activity_logs (user_id, event_id, occurred_at) {
        event_id -> Text,
        user_id -> Text,
        activity_type -> Text,
        occurred_at -> Timestamptz,
        metadata -> Jsonb,
        version -> Text,
        stored_at -> Timestamptz,
    }
}

diesel::table! {
    auth_throttle (key) {
        key -> Text,
        hits -> Int4,
        window_started_at -> Timestamptz,
    }
}

diesel::table! {
    campaign_milestones (campaign_id, participant_count) {
        campaign_id -> Uuid,
        participant_count -> Int8,
        reached_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    campaign_reward_tiers (id) {
        id -> Uuid,
        campaign_id -> Uuid,
        name -> Text,
        referral_threshold -> Int4,
        delivery_method -> Text,
        webhook_url -> Nullable<Text>,
    }
}

diesel::table! {
    campaigns (id) {
        id -> Uuid,
        name -> Text,
        status -> Text,
        points_per_referral -> Int4,
        participant_count -> Int8,
        notify_email -> Nullable<Text>,
        webhook_secret -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        owner_user_id -> Nullable<Int8>,
    }
}

diesel::table! {
    credential_history (id) {
        id -> Int8,
        user_id -> Int8,
        password_hash -> Text,
        replaced_at -> Timestamptz,
    }
}

diesel::table! {
    oauth2_access_tokens (token_hash) {
        token_hash -> Text,
        client_id -> Text,
        user_id -> Nullable<Int8>,
        scopes -> Array<Nullable<Text>>,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        session_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    oauth2_audit_logs (id) {
        id -> Int8,
        event_type -> Text,
        client_id -> Nullable<Text>,
        user_id -> Nullable<Int8>,
        ip_address -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        success -> Bool,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    oauth2_authorization_codes (code_hash) {
        code_hash -> Text,
        client_id -> Text,
        user_id -> Int8,
        redirect_uri -> Text,
        scopes -> Array<Nullable<Text>>,
        code_challenge -> Nullable<Text>,
        code_challenge_method -> Nullable<Text>,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        session_id -> Nullable<Uuid>,
        nonce -> Nullable<Text>,
        auth_time -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    oauth2_clients (id) {
        id -> Uuid,
        client_id -> Text,
        client_secret_hash -> Nullable<Text>,
        name -> Text,
        redirect_uris -> Array<Nullable<Text>>,
        grant_types -> Array<Nullable<Text>>,
        scopes -> Array<Nullable<Text>>,
        owner_user_id -> Nullable<Int8>,
        is_confidential -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    oauth2_refresh_tokens (token_hash) {
        token_hash -> Text,
        access_token_hash -> Nullable<Text>,
        client_id -> Text,
        user_id -> Int8,
        scopes -> Array<Nullable<Text>>,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        session_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    oauth2_scopes (name) {
        name -> Text,
        description -> Text,
        is_default -> Bool,
    }
}

diesel::table! {
    oauth2_signing_keys (kid) {
        kid -> Text,
        algorithm -> Text,
        private_key -> Text,
        public_jwk -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    oauth2_user_consents (user_id, client_id) {
        user_id -> Int8,
        client_id -> Text,
        scopes -> Array<Nullable<Text>>,
        granted_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    oauth_accounts (id) {
        id -> Uuid,
        user_id -> Int8,
        provider -> Text,
        provider_uid -> Text,
        email -> Nullable<Text>,
        access_token_hash -> Nullable<Text>,
        refresh_token_hash -> Nullable<Text>,
        token_expires_at -> Nullable<Timestamptz>,
        metadata -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_events (id) {
        id -> Int8,
        topic -> Text,
        message_key -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    participant_rewards (id) {
        id -> Uuid,
        campaign_id -> Uuid,
        participant_id -> Uuid,
        tier_id -> Uuid,
        earned_at -> Timestamptz,
        delivery_status -> Text,
        delivery_attempts -> Int4,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    participants (id) {
        id -> Uuid,
        campaign_id -> Uuid,
        email -> Text,
        email_lower -> Text,
        email_canonical -> Text,
        referral_code -> Text,
        original_position -> Int8,
        position -> Int8,
        verified_referral_count -> Int4,
        signup_ip -> Nullable<Text>,
        verified_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        ranked_referral_count -> Int4,
    }
}

diesel::table! {
    referrals (id) {
        id -> Uuid,
        campaign_id -> Uuid,
        referrer_id -> Uuid,
        referred_id -> Uuid,
        status -> Text,
        fraud_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        verified_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    registration_requests (request_id) {
        request_id -> Uuid,
        status -> Text,
        user_id -> Nullable<Int8>,
        error_code -> Nullable<Text>,
        error_message -> Nullable<Text>,
        retry_count -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sent_emails (event_id, template, recipient) {
        event_id -> Uuid,
        template -> Text,
        recipient -> Text,
        status -> Text,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    snowflake_node_leases (node_id) {
        node_id -> Int2,
        holder -> Text,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    user_credentials (user_id) {
        user_id -> Int8,
        password_hash -> Text,
        is_verified -> Bool,
        invalidated_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    user_sessions (id) {
        id -> Uuid,
        user_id -> Int8,
        ip_address -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> Timestamptz,
        refreshed_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        client_id -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        is_email_verified -> Bool,
        is_phone_verified -> Bool,
        consent -> Bool,
        status -> Text,
        status_changed_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(account_tokens -> users (user_id));
diesel::joinable!(campaign_milestones -> campaigns (campaign_id));
diesel::joinable!(campaign_reward_tiers -> campaigns (campaign_id));
diesel::joinable!(campaigns -> users (owner_user_id));
diesel::joinable!(credential_history -> users (user_id));
diesel::joinable!(oauth2_access_tokens -> user_sessions (session_id));
diesel::joinable!(oauth2_access_tokens -> users (user_id));
diesel::joinable!(oauth2_authorization_codes -> user_sessions (session_id));
diesel::joinable!(oauth2_authorization_codes -> users (user_id));
diesel::joinable!(oauth2_clients -> users (owner_user_id));
diesel::joinable!(oauth2_refresh_tokens -> user_sessions (session_id));
diesel::joinable!(oauth2_refresh_tokens -> users (user_id));
diesel::joinable!(oauth2_user_consents -> users (user_id));
diesel::joinable!(oauth_accounts -> users (user_id));
diesel::joinable!(participant_rewards -> campaign_reward_tiers (tier_id));
diesel::joinable!(participant_rewards -> campaigns (campaign_id));
diesel::joinable!(participant_rewards -> participants (participant_id));
diesel::joinable!(participants -> campaigns (campaign_id));
diesel::joinable!(referrals -> campaigns (campaign_id));
diesel::joinable!(user_credentials -> users (user_id));
diesel::joinable!(user_sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    account_tokens,
    activity_event_keys,
    activity_logs,
    auth_throttle,
    campaign_milestones,
    campaign_reward_tiers,
    campaigns,
    credential_history,
    oauth2_access_tokens,
    oauth2_audit_logs,
    oauth2_authorization_codes,
    oauth2_clients,
    oauth2_refresh_tokens,
    oauth2_scopes,
    oauth2_signing_keys,
    oauth2_user_consents,
    oauth_accounts,
    outbox_events,
    participant_rewards,
    participants,
    referrals,
    registration_requests,
    sent_emails,
    snowflake_node_leases,
    user_credentials,
    user_sessions,
    users,
);
