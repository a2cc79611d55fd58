//! A stand-in for the Azure Key Vault keys REST API, following its documented behaviour:
//!
//! * `POST /keys/{name}/{version}/wrapkey?api-version=..` and `.../unwrapkey` with a JSON body
//!   `{"alg": "RSA-OAEP-256", "value": <base64url>}`, answering `{"kid": .., "value": <base64url>}`;
//!   an empty version means the key's current version.
//! * A request without a bearer token gets `401` with the challenge
//!   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"`,
//!   as the SDK expects before it fetches a token.
//! * Errors are `{"error": {"code": .., "message": ..}}`.
//!
//! The SDK refuses http endpoints, so tests give it `https://127.0.0.1:PORT` and add
//! [`HttpSchemePolicy`] (per-try) which sends the request over plain http to this stand-in.

use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const TOKEN: &str = "stand-in-access-token";
const KEY_VERSION: &str = "4c1a4e6f8b2d4e0f9a3b5c7d9e1f2a3b";

pub struct KeyVaultStandIn {
    pub addr: SocketAddr,
    state: Arc<Vault>,
    _task: tokio::task::JoinHandle<()>,
}

struct Vault {
    key_name: String,
    key: Mutex<Option<PrivateDecryptingKey>>,
    requests: AtomicU64,
    challenges: AtomicU64,
}

impl KeyVaultStandIn {
    /// Starts the stand-in on 127.0.0.1 with one RSA-2048 key named `key_name`.
    pub async fn start(key_name: &str) -> Self {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).expect("RSA key generation");
        let state = Arc::new(Vault {
            key_name: key_name.to_string(),
            key: Mutex::new(Some(key)),
            requests: AtomicU64::new(0),
            challenges: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/keys/{name}/{version}/{op}", post(op_with_version))
            .route("/keys/{name}/{op}", post(op_current))
            .with_state(state.clone());
        let (addr, task) = crate::serve_on_loopback(app).await;
        KeyVaultStandIn {
            addr,
            state,
            _task: task,
        }
    }

    /// The vault URL to give the SDK (https, as it requires; see [`HttpSchemePolicy`]).
    pub fn vault_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Simulates deleting the key in the vault: every later wrap/unwrap fails with 404.
    pub fn delete_key(&self) {
        *self.state.key.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn challenges(&self) -> u64 {
        self.state.challenges.load(Ordering::SeqCst)
    }
}

fn kv_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

async fn op_current(
    State(v): State<Arc<Vault>>,
    Path((name, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    handle(v, name, String::new(), op, headers, body)
}

async fn op_with_version(
    State(v): State<Arc<Vault>>,
    Path((name, version, op)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    handle(v, name, version, op, headers, body)
}

fn handle(
    v: Arc<Vault>,
    name: String,
    version: String,
    op: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    v.requests.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if auth.is_empty() {
        v.challenges.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000\", resource=\"https://vault.azure.net\"",
            )],
        )
            .into_response();
    }
    if auth != format!("Bearer {TOKEN}") {
        return kv_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "AKV10022: Invalid audience or token.",
        );
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    if name != v.key_name || !(version.is_empty() || version == KEY_VERSION) {
        return kv_error(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            &format!("A key with (name/id) {name}/{version} was not found in this key vault."),
        );
    }
    let guard = v.key.lock().unwrap_or_else(|p| p.into_inner());
    let Some(key) = guard.as_ref() else {
        return kv_error(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            &format!("A key with (name/id) {name} was not found in this key vault."),
        );
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                &format!("invalid JSON body: {e}"),
            );
        }
    };
    if req.get("alg").and_then(Value::as_str) != Some("RSA-OAEP-256") {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "Property 'alg' must be RSA-OAEP-256 for this stand-in.",
        );
    }
    let Some(value) = req
        .get("value")
        .and_then(Value::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
    else {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "Property 'value' must be base64url.",
        );
    };
    let kid = format!("https://{host}/keys/{name}/{KEY_VERSION}");
    let out = match op.as_str() {
        "wrapkey" => {
            let Ok(public) = OaepPublicEncryptingKey::new(key.public_key()) else {
                return kv_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "key");
            };
            let mut buf = vec![0u8; public.ciphertext_size()];
            match public.encrypt(&OAEP_SHA256_MGF1SHA256, &value, &mut buf, None) {
                Ok(c) => c.to_vec(),
                Err(_) => {
                    return kv_error(
                        StatusCode::BAD_REQUEST,
                        "BadParameter",
                        "Value is too long for this key.",
                    );
                }
            }
        }
        "unwrapkey" => {
            let Ok(private) = OaepPrivateDecryptingKey::new(key.clone()) else {
                return kv_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "key");
            };
            let mut buf = vec![0u8; private.min_output_size()];
            match private.decrypt(&OAEP_SHA256_MGF1SHA256, &value, &mut buf, None) {
                Ok(p) => p.to_vec(),
                Err(_) => {
                    return kv_error(
                        StatusCode::BAD_REQUEST,
                        "BadParameter",
                        "The parameter is incorrect.",
                    );
                }
            }
        }
        _ => return kv_error(StatusCode::NOT_FOUND, "NotFound", "unknown operation"),
    };
    Json(json!({ "kid": kid, "value": URL_SAFE_NO_PAD.encode(out) })).into_response()
}

/// A test credential that hands out the stand-in's token.
#[derive(Debug)]
pub struct StandInCredential;

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for StandInCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        Ok(azure_core::credentials::AccessToken::new(
            TOKEN,
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// Per-try pipeline policy for tests: sends the https request the SDK built to the stand-in over http.
#[derive(Debug)]
pub struct HttpSchemePolicy;

#[async_trait::async_trait]
impl azure_core::http::policies::Policy for HttpSchemePolicy {
    async fn send(
        &self,
        ctx: &azure_core::http::Context,
        request: &mut azure_core::http::Request,
        next: &[Arc<dyn azure_core::http::policies::Policy>],
    ) -> azure_core::http::policies::PolicyResult {
        let _ = request.url_mut().set_scheme("http");
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// Client options that route the SDK to the stand-in.
pub fn client_options() -> azure_core::http::ClientOptions {
    azure_core::http::ClientOptions {
        per_try_policies: vec![Arc::new(HttpSchemePolicy)],
        ..Default::default()
    }
}
