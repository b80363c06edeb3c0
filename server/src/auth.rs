//! Token authentication: JWT verification (HS256 secret, an RS256/ES256 public key, or the keys
//! an identity provider publishes at a JWKS URL: `jwks.rs`), minting of development tokens, the
//! key generated under the data dir, and the REST extractors (any caller, a tenant admin).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{JwtSource, PublicKeyAlg};
use crate::error::AppError;
use crate::jwks::{Jwks, Lookup};
use crate::state::AppState;
use confab_protocol::limits::MAX_USER_ID_LEN;

/// File under the data dir holding the generated HS256 key (hex).
pub const GENERATED_KEY_FILE: &str = "jwt-secret";

/// The claims Confab reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer: checked against `jwt_issuer` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: must be `jwt_audience` when that is set; refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The user is an admin of the tenant (`"admin": true`): may call `/v1/admin/…` for it.
    /// Absent is false; any value other than a boolean makes the token invalid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl Claims {
    /// The claims of a token for `user` of `tenant` expiring at `exp`; nothing else set.
    pub fn new(user: &str, tenant: &str, exp: u64) -> Claims {
        Claims {
            sub: user.to_owned(),
            tid: tenant.to_owned(),
            name: None,
            exp,
            iat: None,
            nbf: None,
            iss: None,
            aud: None,
            admin: false,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: Arc<str>,
    pub tenant: Arc<str>,
    pub name: Option<Arc<str>>,
    /// When the token stops being valid (`exp`, seconds since the epoch): an open WebSocket is
    /// closed then unless the client sent a `refresh` with a newer token.
    pub expires_at: u64,
}

/// A verified token: its caller, and whether it is an admin of the tenant (`admin` claim; kept
/// apart from [`AuthUser`], which every WebSocket session holds and whose size is watched).
#[derive(Debug, Clone)]
pub struct Verified {
    pub user: AuthUser,
    pub admin: bool,
}

/// Why key material could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid key {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("jwt secret must be at least 32 bytes")]
    ShortSecret,
    #[error("tokens can only be minted with an HS256 secret, not with a public key or a JWKS URL")]
    CannotMint,
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// What verifies a token's signature.
enum Verifier {
    /// One configured (or generated) key.
    Key(DecodingKey),
    /// The keys of an identity provider, chosen by the token's `kid`.
    Jwks(Arc<Jwks>),
}

/// Verifies tokens and, with a secret, mints them.
pub struct JwtKeys {
    verifier: Verifier,
    encoding: Option<EncodingKey>,
    validation: Validation,
    /// The key was generated under the data dir (development mode).
    pub generated: bool,
    /// A key for signing media URLs, derived from the HS256 secret (none with a public key).
    url_key: Option<[u8; 32]>,
    /// The `iss` and `aud` tokens must carry, and minted tokens carry.
    issuer: Option<String>,
    audience: Option<String>,
    tenants: Tenants,
}

/// Tenant ids, one `Arc` per tenant shared by all of its callers: every connection keeps its
/// tenant (in its session, the hub's maps and the per-user limits), and one allocation per
/// connection became one per tenant. Only tenants of verified tokens get here, so the set is
/// as bounded as the tenants the trusted issuer signs for.
#[derive(Debug, Default)]
struct Tenants(std::sync::Mutex<std::collections::HashSet<Arc<str>>>);

impl Tenants {
    fn get(&self, tid: String) -> Arc<str> {
        let mut tenants = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tenant) = tenants.get(tid.as_str()) {
            return tenant.clone();
        }
        let tenant: Arc<str> = tid.into();
        tenants.insert(tenant.clone());
        tenant
    }
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// An HS256 verifier and minter.
    pub fn from_secret(secret: &[u8]) -> Result<JwtKeys, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::ShortSecret);
        }
        let bad = |e: jsonwebtoken::errors::Error| KeyError::Sign(e.to_string());
        Ok(JwtKeys {
            verifier: Verifier::Key(DecodingKey::from_secret(secret).map_err(bad)?),
            encoding: Some(EncodingKey::from_secret(secret).map_err(bad)?),
            validation: validation(Algorithm::HS256),
            generated: false,
            url_key: Some(crate::media::derive_url_key(secret)),
            issuer: None,
            audience: None,
            tenants: Tenants::default(),
        })
    }

    /// A verifier of RS256 or ES256 tokens (PEM public key).
    pub fn from_public_key(path: &Path, alg: PublicKeyAlg) -> Result<JwtKeys, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |e: jsonwebtoken::errors::Error| KeyError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let (decoding, algorithm) = match alg {
            PublicKeyAlg::Rs256 => (
                DecodingKey::from_rsa_pem(&pem).map_err(invalid)?,
                Algorithm::RS256,
            ),
            PublicKeyAlg::Es256 => (
                DecodingKey::from_ec_pem(&pem).map_err(invalid)?,
                Algorithm::ES256,
            ),
        };
        Ok(JwtKeys {
            verifier: Verifier::Key(decoding),
            encoding: None,
            validation: validation(algorithm),
            generated: false,
            url_key: None,
            issuer: None,
            audience: None,
            tenants: Tenants::default(),
        })
    }

    /// A verifier of tokens signed by the keys of an identity provider's key set (tokens are
    /// minted elsewhere). The set is loaded by [`Jwks::spawn`].
    pub fn from_jwks(jwks: Arc<Jwks>) -> JwtKeys {
        JwtKeys {
            verifier: Verifier::Jwks(jwks),
            encoding: None,
            // Replaced by each key's own algorithm.
            validation: validation(Algorithm::RS256),
            generated: false,
            url_key: None,
            issuer: None,
            audience: None,
            tenants: Tenants::default(),
        }
    }

    /// The identity provider's key set, when tokens are verified with one.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        match &self.verifier {
            Verifier::Jwks(jwks) => Some(jwks),
            Verifier::Key(_) => None,
        }
    }

    /// The keys for a configuration: the configured secret or public key, or the key generated
    /// under `data_dir` (created on first use).
    pub fn load(source: &JwtSource, data_dir: &Path) -> Result<JwtKeys, KeyError> {
        match source {
            JwtSource::Secret(secret) => JwtKeys::from_secret(secret.as_bytes()),
            JwtSource::PublicKey { path, alg } => JwtKeys::from_public_key(path, *alg),
            JwtSource::Jwks { url } => Ok(JwtKeys::from_jwks(Arc::new(Jwks::new(url)))),
            JwtSource::Generated => {
                let secret = load_or_generate_secret(data_dir)?;
                let mut keys = JwtKeys::from_secret(secret.as_bytes())?;
                keys.generated = true;
                Ok(keys)
            }
        }
    }

    /// Requires tokens to carry `issuer` as `iss` and name `audience` in `aud` (each when
    /// given), and mints tokens that do.
    pub fn with_claims(mut self, issuer: Option<&str>, audience: Option<&str>) -> JwtKeys {
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = issuer {
            self.validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = audience {
            self.validation.set_audience(&[audience]);
            required.push("aud");
        }
        self.validation.set_required_spec_claims(&required);
        self.issuer = issuer.map(str::to_owned);
        self.audience = audience.map(str::to_owned);
        self
    }

    /// The key media URLs are signed with when none is configured: derived from the HS256
    /// secret, so that every node sharing the secret accepts the others' URLs.
    pub fn url_key(&self) -> Option<[u8; 32]> {
        self.url_key
    }

    /// Verifies a token and returns its caller; with a JWKS, a token naming a key the cached
    /// set does not hold has the set fetched again (at most every [`crate::jwks::MIN_REFETCH`]).
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, AppError> {
        self.authenticate_token(token)
            .await
            .map(|verified| verified.user)
    }

    /// [`JwtKeys::authenticate`], with the token's admin claim.
    pub async fn authenticate_token(&self, token: &str) -> Result<Verified, AppError> {
        let verified = self.verify_token(token);
        let Verifier::Jwks(jwks) = &self.verifier else {
            return verified;
        };
        let kid = match jsonwebtoken::decode_header(token) {
            Ok(header) => header.kid,
            Err(_) => return verified,
        };
        match jwks.lookup(kid.as_deref()) {
            Lookup::Found(_) => verified,
            Lookup::NotLoaded | Lookup::Unknown => {
                jwks.refresh_for_unknown_key().await;
                self.verify_token(token)
            }
        }
    }

    /// Verifies a token against the keys at hand and returns its caller.
    pub fn verify(&self, token: &str) -> Result<AuthUser, AppError> {
        self.verify_token(token).map(|verified| verified.user)
    }

    /// [`JwtKeys::verify`], with the token's admin claim.
    pub fn verify_token(&self, token: &str) -> Result<Verified, AppError> {
        let invalid =
            |e: jsonwebtoken::errors::Error| AppError::unauthorized(format!("invalid token: {e}"));
        let data = match &self.verifier {
            Verifier::Key(key) => jsonwebtoken::decode::<Claims>(token, key, &self.validation),
            Verifier::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
                let key = match jwks.lookup(header.kid.as_deref()) {
                    Lookup::Found(key) => key,
                    Lookup::NotLoaded => {
                        return Err(AppError::unavailable(
                            "the identity provider's token keys are not loaded yet; retry",
                        ));
                    }
                    Lookup::Unknown => {
                        return Err(AppError::unauthorized(
                            "invalid token: signed with a key the identity provider does not \
                             publish (unknown `kid`)",
                        ));
                    }
                };
                // The key's algorithm only: a token cannot choose another (HS256 "signed"
                // with the public key, `none`).
                let mut validation = self.validation.clone();
                validation.algorithms = vec![key.algorithm];
                jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            }
        }
        .map_err(invalid)?;
        let claims = data.claims;
        for (name, value) in [("sub", &claims.sub), ("tid", &claims.tid)] {
            if value.is_empty()
                || value.len() > MAX_USER_ID_LEN
                || crate::validate::has_hidden_characters(value)
            {
                return Err(AppError::unauthorized(format!(
                    "invalid token: bad `{name}` claim"
                )));
            }
        }
        let user = AuthUser {
            expires_at: claims.exp,
            user: claims.sub.into(),
            tenant: self.tenants.get(claims.tid),
            name: claims
                .name
                .map(|n| {
                    crate::validate::visible(&n)
                        .chars()
                        .take(128)
                        .collect::<String>()
                })
                .filter(|n| !n.trim().is_empty())
                .map(Into::into),
        };
        Ok(Verified {
            user,
            admin: claims.admin,
        })
    }

    /// Mints a token valid for `ttl`.
    pub fn mint(
        &self,
        user: &str,
        tenant: &str,
        name: Option<&str>,
        ttl: Duration,
    ) -> Result<String, KeyError> {
        self.mint_claims(user, tenant, name, false, ttl)
    }

    /// Mints a token of an admin of `tenant` (claim `"admin": true`), valid for `ttl`.
    pub fn mint_admin(
        &self,
        user: &str,
        tenant: &str,
        name: Option<&str>,
        ttl: Duration,
    ) -> Result<String, KeyError> {
        self.mint_claims(user, tenant, name, true, ttl)
    }

    fn mint_claims(
        &self,
        user: &str,
        tenant: &str,
        name: Option<&str>,
        admin: bool,
        ttl: Duration,
    ) -> Result<String, KeyError> {
        let encoding = self.encoding.as_ref().ok_or(KeyError::CannotMint)?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            name: name.map(str::to_owned),
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            admin,
            ..Claims::new(user, tenant, now.saturating_add(ttl.as_secs()))
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp", "sub"]);
    // A token not valid yet is refused like an expired one.
    validation.validate_nbf = true;
    validation.leeway = 30;
    validation
}

/// Reads the generated key under `data_dir`, creating it (owner-only permissions) if absent.
fn load_or_generate_secret(data_dir: &Path) -> Result<String, KeyError> {
    let path = data_dir.join(GENERATED_KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim().to_owned();
            if secret.len() < 32 {
                return Err(KeyError::Invalid {
                    path,
                    reason: "too short".into(),
                });
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let bytes: [u8; 32] = rand::random();
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&path, &secret).map_err(io)?;
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Verified::from_request_parts(parts, state).await?.user)
    }
}

impl FromRequestParts<AppState> for Verified {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| AppError::unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(bearer)
            .ok_or_else(|| AppError::unauthorized("malformed Authorization header"))?;
        let verified = state.keys.authenticate_token(token).await?;
        state.user_limits().rest.check(&verified.user)?;
        state.people().seen(&state.store, &verified.user);
        Ok(verified)
    }
}

/// A caller whose token carries the tenant-admin claim (`"admin": true`); anyone else is
/// refused with 403 `forbidden` (without a valid token, 401 first).
#[derive(Debug, Clone)]
pub struct TenantAdmin(pub AuthUser);

impl FromRequestParts<AppState> for TenantAdmin {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let verified = Verified::from_request_parts(parts, state).await?;
        if !verified.admin {
            return Err(AppError::forbidden(
                "this needs a tenant admin's token (claim `\"admin\": true`)",
            ));
        }
        Ok(TenantAdmin(verified.user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_protocol::ErrorCode;

    fn keys() -> JwtKeys {
        JwtKeys::from_secret(&[7u8; 32]).expect("keys")
    }

    #[test]
    fn minted_tokens_verify() {
        let keys = keys();
        let token = keys
            .mint("alice", "acme", Some("Alice"), Duration::from_secs(60))
            .expect("mint");
        let user = keys.verify(&token).expect("verify");
        assert_eq!(&*user.user, "alice");
        assert_eq!(&*user.tenant, "acme");
        assert_eq!(user.name.as_deref(), Some("Alice"));
        assert!(
            !keys.verify_token(&token).expect("verify").admin,
            "no admin claim unless asked for"
        );
        let admin = keys
            .mint_admin("ada", "acme", None, Duration::from_secs(60))
            .expect("mint");
        assert!(keys.verify_token(&admin).expect("verify").admin);
    }

    /// Every connection keeps its tenant id: one `Arc` per tenant, not per token (issue 17).
    #[test]
    fn callers_of_one_tenant_share_its_id() {
        let keys = keys();
        let verify = |user: &str, tenant: &str| {
            let token = keys
                .mint(user, tenant, None, Duration::from_secs(60))
                .expect("mint");
            keys.verify(&token).expect("verify").tenant
        };
        let (a, b, other) = (
            verify("a", "acme"),
            verify("b", "acme"),
            verify("c", "umbrella"),
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((&*a, &*other), ("acme", "umbrella"));
    }

    #[test]
    fn an_admin_claim_that_is_not_a_boolean_is_refused() {
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&[7u8; 32]).expect("key"),
            )
            .expect("encode")
        };
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let keys = keys();
        for admin in [serde_json::json!("true"), serde_json::json!(1)] {
            let token =
                sign(serde_json::json!({"sub": "a", "tid": "t", "exp": exp, "admin": admin}));
            assert!(keys.verify(&token).is_err(), "admin: {admin}");
        }
        let token = sign(serde_json::json!({"sub": "a", "tid": "t", "exp": exp, "admin": false}));
        assert!(!keys.verify_token(&token).expect("a boolean").admin);
    }

    #[test]
    fn not_before_issuer_and_audience_are_checked() {
        let secret = [7u8; 32];
        let sign = |claims: &Claims| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                claims,
                &EncodingKey::from_secret(&secret).expect("key"),
            )
            .expect("encode")
        };
        let later = jsonwebtoken::get_current_timestamp() + 3600;
        let plain = JwtKeys::from_secret(&secret).expect("keys");
        let future = Claims {
            nbf: Some(later - 60),
            ..Claims::new("a", "t", later)
        };
        assert!(plain.verify(&sign(&future)).is_err(), "not valid yet");
        let for_other = Claims {
            aud: Some("another-service".into()),
            ..Claims::new("a", "t", later)
        };
        assert!(
            plain.verify(&sign(&for_other)).is_err(),
            "meant for another audience"
        );

        let strict = JwtKeys::from_secret(&secret)
            .expect("keys")
            .with_claims(Some("https://id.example"), Some("confab"));
        let good = Claims {
            iss: Some("https://id.example".into()),
            aud: Some("confab".into()),
            ..Claims::new("a", "t", later)
        };
        strict
            .verify(&sign(&good))
            .expect("issuer and audience match");
        for bad in [
            Claims {
                iss: None,
                ..good.clone()
            },
            Claims {
                iss: Some("https://evil.example".into()),
                ..good.clone()
            },
            Claims {
                aud: None,
                ..good.clone()
            },
            Claims {
                aud: Some("other".into()),
                ..good.clone()
            },
        ] {
            assert!(strict.verify(&sign(&bad)).is_err(), "{bad:?}");
        }
        let minted = strict
            .mint("a", "t", None, Duration::from_secs(60))
            .expect("mint");
        strict
            .verify(&minted)
            .expect("minted tokens carry iss and aud");
    }

    #[test]
    fn expired_wrong_key_and_alg_none_are_refused() {
        let keys = keys();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims::new("a", "t", 1_000),
            &EncodingKey::from_secret(&[7u8; 32]).expect("key"),
        )
        .expect("encode");
        assert_eq!(
            keys.verify(&expired).map(|_| ()).unwrap_err().code,
            ErrorCode::Unauthorized
        );

        let other = JwtKeys::from_secret(&[8u8; 32]).expect("keys");
        let token = other
            .mint("a", "t", None, Duration::from_secs(60))
            .expect("mint");
        assert!(keys.verify(&token).is_err());

        // {"alg":"none"} with valid claims and an empty signature.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let claims = "eyJzdWIiOiJhIiwidGlkIjoidCIsImV4cCI6OTk5OTk5OTk5OX0";
        assert!(keys.verify(&format!("{header}.{claims}.")).is_err());
        assert!(keys.verify("not a token").is_err());
    }

    #[test]
    fn generated_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = JwtKeys::load(&JwtSource::Generated, dir.path()).expect("generate");
        let token = first
            .mint("a", "t", None, Duration::from_secs(60))
            .expect("mint");
        let second = JwtKeys::load(&JwtSource::Generated, dir.path()).expect("reload");
        assert!(second.generated);
        second.verify(&token).expect("same key");
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
