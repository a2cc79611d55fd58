//! A real OpenID provider for OAuth tests: npm `oidc-provider` (node-oidc-provider, certified),
//! run by `testsupport/oidc/server.mjs` under the machine's Node over HTTPS on 127.0.0.1, with a
//! test CA and a leaf certificate for 127.0.0.1 made here (rcgen). The oauth2 crate refuses an
//! http revocation URL, and rustls refuses a lone self-signed certificate as an end entity.
//!
//! [`OidcProvider::start`] installs the npm package on first use (`npm ci`, under a file lock),
//! starts one provider for the calling test and stops it (by its PID) when dropped.
//! [`browse`] plays the user's browser: follows redirects with a cookie jar through the
//! provider's (automatically answered) login and consent to the client's redirect URI.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A test certificate authority and a server certificate for 127.0.0.1 signed by it.
pub struct TestCa {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
}

impl TestCa {
    pub fn for_loopback() -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "meetbot test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(Vec::<String>::new())?;
        leaf.distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        leaf.subject_alt_names = vec![SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]))];
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
        Ok(TestCa {
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf_cert.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        })
    }

    pub fn certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("test CA PEM")
    }
}

/// One registered client.
#[derive(Clone, Debug)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    /// Space-separated scopes the client may ask for.
    pub scope: String,
}

pub struct OidcProvider {
    pub issuer: String,
    pub ca: TestCa,
    child: Child,
    _dir: tempfile::TempDir,
}

pub(crate) fn node() -> String {
    std::env::var("MEETBOT_TEST_NODE").unwrap_or_else(|_| "node".into())
}

/// `testsupport/<name>` with its node_modules installed (`npm ci`, once, under a lock);
/// `probe` is a file the installed package has.
pub(crate) fn npm_package(name: &str, probe: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = crate::workspace_root().join("testsupport").join(name);
    if dir.join(probe).is_file() {
        return Ok(dir);
    }
    let lock = std::fs::File::create(dir.join(".install.lock"))?;
    lock.lock()?;
    if !dir.join(probe).is_file() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .map_err(|e| anyhow::anyhow!("cannot run npm (Node.js is needed for {name}): {e}"))?;
        anyhow::ensure!(st.success(), "npm ci in {} failed", dir.display());
    }
    lock.unlock()?;
    Ok(dir)
}

impl OidcProvider {
    /// Starts a provider offering `scopes` to `clients`; access tokens live `access_ttl` seconds.
    pub fn start(clients: &[OidcClient], scopes: &[&str], access_ttl: u64) -> anyhow::Result<Self> {
        let pkg = npm_package("oidc", "node_modules/oidc-provider/package.json")?;
        let ca = TestCa::for_loopback()?;
        let dir = tempfile::tempdir()?;
        let cert = dir.path().join("leaf.pem");
        let key = dir.path().join("leaf.key");
        std::fs::write(&cert, &ca.leaf_pem)?;
        std::fs::write(&key, &ca.leaf_key_pem)?;
        let cfg = json!({
            "cert": cert,
            "key": key,
            "scopes": scopes,
            "access_ttl": access_ttl,
            "clients": clients.iter().map(|c| json!({
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "redirect_uris": [c.redirect_uri],
                "scope": c.scope,
            })).collect::<Vec<_>>(),
        });
        let mut child = Command::new(node())
            .arg(pkg.join("server.mjs"))
            .arg(cfg.to_string())
            .current_dir(&pkg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start node for the OpenID provider: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The first line is the issuer; the rest (provider notices) goes to stderr, and the
            // pipe stays drained so the provider never fails writing to it.
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            for l in lines.map_while(Result::ok) {
                eprintln!("oidc-provider: {l}");
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if !l.is_empty() => l,
            _ => {
                let _ = child.kill();
                anyhow::bail!("the OpenID provider did not start within 30 s");
            }
        };
        let v: Value = serde_json::from_str(line.trim())?;
        let issuer = v["issuer"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("provider printed no issuer: {line}"))?
            .to_string();
        Ok(OidcProvider {
            issuer,
            ca,
            child,
            _dir: dir,
        })
    }

    pub fn auth_url(&self) -> String {
        format!("{}/auth", self.issuer)
    }
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }
    pub fn revocation_url(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }
    pub fn introspection_url(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    /// A client trusting only the test CA.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([self.ca.certificate()])
            .build()
            .expect("client")
    }

    /// POSTs `token` with `client`'s credentials to an endpoint of the provider.
    async fn post_token(
        &self,
        url: String,
        client: &OidcClient,
        token: &str,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http()
            .post(url)
            .form(&[
                ("token", token),
                ("client_id", &client.client_id),
                ("client_secret", &client.client_secret),
            ])
            .send()
            .await?
            .error_for_status()?)
    }

    /// RFC 7662 introspection of `token` as `client`: the provider's answer (`active`, `scope`, ...).
    pub async fn introspect(&self, client: &OidcClient, token: &str) -> anyhow::Result<Value> {
        Ok(self
            .post_token(self.introspection_url(), client, token)
            .await?
            .json()
            .await?)
    }

    /// RFC 7009 revocation of `token` as `client` (what a user removing the app's access does).
    pub async fn revoke(&self, client: &OidcClient, token: &str) -> anyhow::Result<()> {
        self.post_token(self.revocation_url(), client, token)
            .await?;
        Ok(())
    }

    /// Plays the user's browser from `url` (an authorization URL): follows every redirect with a
    /// fresh cookie jar and returns the final response's status and body.
    pub async fn browse(&self, url: &str) -> anyhow::Result<(u16, String)> {
        self.browse_in(&Default::default(), url).await
    }

    /// A browser whose cookies live in `jar` (shared with the test, which may put a meetbot
    /// session there or read what the servers set); follows redirects.
    pub fn browser(&self, jar: &std::sync::Arc<reqwest::cookie::Jar>) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([self.ca.certificate()])
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::limited(20))
            .build()
            .expect("browser")
    }

    /// [`Self::browse`] in the browser whose cookies are `jar`.
    pub async fn browse_in(
        &self,
        jar: &std::sync::Arc<reqwest::cookie::Jar>,
        url: &str,
    ) -> anyhow::Result<(u16, String)> {
        let resp = self.browser(jar).get(url).send().await?;
        Ok((resp.status().as_u16(), resp.text().await?))
    }

    /// Goes through the provider's login and consent from `url` in the browser whose cookies are
    /// `jar`, and stops before the redirect back to a URL starting with `callback`: that URL
    /// (with its `code` and `state`), as an attacker capturing it would have it.
    pub async fn capture_callback(
        &self,
        jar: &std::sync::Arc<reqwest::cookie::Jar>,
        url: &str,
        callback: &str,
    ) -> anyhow::Result<String> {
        let stop = callback.to_string();
        let browser = reqwest::Client::builder()
            .tls_certs_only([self.ca.certificate()])
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::custom(move |a| {
                if a.url().as_str().starts_with(&stop) {
                    a.stop()
                } else if a.previous().len() > 20 {
                    a.error("too many redirects")
                } else {
                    a.follow()
                }
            }))
            .build()?;
        let resp = browser.get(url).send().await?;
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|l| l.starts_with(callback))
            .ok_or_else(|| anyhow::anyhow!("the provider did not redirect to {callback}"))?;
        Ok(to.to_string())
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token check for stand-ins of resource servers (Graph, Google): introspects bearer tokens at
/// the real provider, as a resource server would.
#[derive(Clone)]
pub struct Introspector {
    pub url: String,
    pub client: OidcClient,
    pub http: reqwest::Client,
}

impl Introspector {
    pub fn new(p: &OidcProvider, client: &OidcClient) -> Self {
        Introspector {
            url: p.introspection_url(),
            client: client.clone(),
            http: p.http(),
        }
    }

    pub async fn active(&self, token: &str) -> bool {
        let r = self
            .http
            .post(&self.url)
            .form(&[
                ("token", token),
                ("client_id", &self.client.client_id),
                ("client_secret", &self.client.client_secret),
            ])
            .send()
            .await;
        match r {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["active"].as_bool())
                .unwrap_or(false),
            Err(_) => false,
        }
    }
}
