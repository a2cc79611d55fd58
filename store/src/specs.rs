//! Collections and their indexes. Created idempotently: control ones when a store opens, tenant
//! ones when a tenant is created.

use crate::engine::CollectionSpec;

pub static TENANTS: CollectionSpec = CollectionSpec {
    name: "tenants",
    fields: &["status"],
    unique: &[],
    ttl: false,
};
pub static DATA_KEYS: CollectionSpec = CollectionSpec {
    name: "data_keys",
    fields: &["tenant_id", "version"],
    unique: &[&["tenant_id", "version"]],
    ttl: false,
};
pub static LEASES: CollectionSpec = CollectionSpec {
    name: "leases",
    fields: &[],
    unique: &[],
    ttl: false,
};
pub static DELETION_LOG: CollectionSpec = CollectionSpec {
    name: "deletion_log",
    fields: &["tenant_id", "erased_at"],
    unique: &[],
    ttl: false,
};

pub static CONNECTIONS: CollectionSpec = CollectionSpec {
    name: "calendar_connections",
    fields: &["user_id", "status"],
    unique: &[],
    ttl: false,
};
pub static MEETINGS: CollectionSpec = CollectionSpec {
    name: "meetings",
    fields: &[
        "connection_id",
        "event_instance_id",
        "starts_at",
        "status",
        "updated_at",
        "meeting_ref",
    ],
    unique: &[&["connection_id", "event_instance_id"]],
    ttl: false,
};
pub static BOT_JOBS: CollectionSpec = CollectionSpec {
    name: "bot_jobs",
    fields: &["meeting_id", "idempotency_key", "state", "join_at"],
    unique: &[&["idempotency_key"]],
    ttl: false,
};
pub static TRANSCRIPTS: CollectionSpec = CollectionSpec {
    name: "transcripts",
    fields: &["meeting_id"],
    unique: &[&["meeting_id"]],
    ttl: true,
};
pub static TRANSCRIPT_PARTS: CollectionSpec = CollectionSpec {
    name: "transcript_parts",
    fields: &["meeting_id", "job_id"],
    unique: &[],
    ttl: true,
};
pub static SUMMARIES: CollectionSpec = CollectionSpec {
    name: "summaries",
    fields: &["meeting_id"],
    unique: &[&["meeting_id"]],
    ttl: true,
};
pub static DELIVERIES: CollectionSpec = CollectionSpec {
    name: "deliveries",
    fields: &["idempotency_key", "meeting_id", "state", "next_at"],
    unique: &[&["idempotency_key"]],
    ttl: false,
};
pub static AUDIT: CollectionSpec = CollectionSpec {
    name: "audit_log",
    fields: &["at", "seq"],
    unique: &[],
    ttl: false,
};

pub static USER_SETTINGS: CollectionSpec = CollectionSpec {
    name: "user_settings",
    fields: &[],
    unique: &[],
    ttl: false,
};
pub static TENANT_SETTINGS: CollectionSpec = CollectionSpec {
    name: "tenant_settings",
    fields: &[],
    unique: &[],
    ttl: false,
};
pub static OAUTH_PENDING: CollectionSpec = CollectionSpec {
    name: "oauth_pending",
    fields: &[],
    unique: &[],
    ttl: true,
};

pub static USERS: CollectionSpec = CollectionSpec {
    name: "users",
    fields: &["email_hash"],
    unique: &[&["email_hash"]],
    ttl: false,
};
pub static SESSIONS: CollectionSpec = CollectionSpec {
    name: "sessions",
    fields: &["user_id"],
    unique: &[],
    ttl: true,
};
pub static API_KEYS: CollectionSpec = CollectionSpec {
    name: "api_keys",
    fields: &[],
    unique: &[],
    ttl: false,
};
pub static SIGNIN_PENDING: CollectionSpec = CollectionSpec {
    name: "signin_pending",
    fields: &[],
    unique: &[],
    ttl: true,
};

pub static AUDIT_HEADS: CollectionSpec = CollectionSpec {
    name: "audit_heads",
    fields: &[],
    unique: &[],
    ttl: false,
};

pub static EXPORTS: CollectionSpec = CollectionSpec {
    name: "exports",
    fields: &[],
    unique: &[],
    ttl: true,
};

pub static CONTROL_COLLECTIONS: &[&CollectionSpec] =
    &[&TENANTS, &DATA_KEYS, &LEASES, &DELETION_LOG, &AUDIT_HEADS];
pub static TENANT_COLLECTIONS: &[&CollectionSpec] = &[
    &CONNECTIONS,
    &MEETINGS,
    &BOT_JOBS,
    &TRANSCRIPTS,
    &TRANSCRIPT_PARTS,
    &SUMMARIES,
    &AUDIT,
    &USER_SETTINGS,
    &OAUTH_PENDING,
    &TENANT_SETTINGS,
    &DELIVERIES,
    &USERS,
    &SESSIONS,
    &API_KEYS,
    &SIGNIN_PENDING,
    &EXPORTS,
];
