//! Token keys published by an identity provider as a JWKS document (`jwt_jwks_url`).
//!
//! The set is fetched at start, refreshed every `jwt_jwks_refresh`, and fetched again when a
//! token names a `kid` the cached set does not hold (a key rotation), at most once per
//! [`MIN_REFETCH`] however many such tokens arrive. Only asymmetric signing keys are taken
//! (RSA, EC, Ed25519); a token is verified with the key its `kid` names and that key's
//! algorithm only, so a token cannot pick its own algorithm (no HS256 signed with a public
//! key). A token without `kid` is accepted only while the set holds exactly one key.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The shortest time between two fetches triggered by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);

/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest JWKS document read.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// Why a JWKS document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the JWKS from {url} is not a key set: {reason}")]
    Document { url: String, reason: String },
    #[error("the JWKS from {url} holds no usable signing key")]
    NoKeys { url: String },
}

/// A verification key and the one algorithm it verifies.
pub struct Key {
    pub decoding: DecodingKey,
    pub algorithm: Algorithm,
}

/// The HTTP(S) client of the fetches.
type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

/// The keys of one identity provider, cached.
pub struct Jwks {
    url: String,
    /// `None` when TLS could not be set up (no usable certificate store): fetches fail.
    client: Option<Client>,
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    /// Held while fetching (one fetch at a time); the time of the last fetch made for a token
    /// the cached set could not verify.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Where the lookup of a token's key ended.
pub enum Lookup {
    Found(Arc<Key>),
    /// No set has been fetched yet.
    NotLoaded,
    /// The set does not hold the `kid` (or the token has none and the set has several keys).
    Unknown,
}

impl Jwks {
    /// An empty cache of the set at `url`; nothing is fetched until [`Jwks::refresh`].
    pub fn new(url: &str) -> Jwks {
        let client = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .map(|builder| {
                let connector = builder.https_or_http().enable_http1().build();
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(connector)
            });
        if let Err(err) = &client {
            tracing::error!(error = %err, "cannot set up TLS for fetching the token keys");
        }
        Jwks {
            url: url.to_owned(),
            client: client.ok(),
            keys: RwLock::new(Arc::new(HashMap::new())),
            fetching: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether a key set has been loaded (until then no token verifies).
    pub fn is_loaded(&self) -> bool {
        !self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// The key for a token's `kid`.
    pub fn lookup(&self, kid: Option<&str>) -> Lookup {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if keys.is_empty() {
            return Lookup::NotLoaded;
        }
        let found = match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        };
        found.map_or(Lookup::Unknown, Lookup::Found)
    }

    /// Fetches the set and replaces the cached one; on failure the cached set stays.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _one_at_a_time = self.fetching.lock().await;
        self.fetch().await
    }

    /// Fetches the set again for a token the cached set cannot verify: one naming an unknown
    /// `kid` (the provider may have rotated its keys) at most every [`MIN_REFETCH`], or any
    /// token while no set is loaded at most every second. Concurrent callers wait for the one
    /// fetch.
    pub async fn refresh_for_unknown_key(&self) {
        let mut last = self.fetching.lock().await;
        let every = if self.is_loaded() {
            MIN_REFETCH
        } else {
            Duration::from_secs(1)
        };
        if last.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(err) = self.fetch().await {
            tracing::warn!(error = %err, "cannot refresh the token keys");
        }
    }

    async fn fetch(&self) -> Result<usize, JwksError> {
        use http_body_util::BodyExt;
        let fetch_error = |reason: String| JwksError::Fetch {
            url: self.url.clone(),
            reason,
        };
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| fetch_error("no TLS client".to_owned()))?;
        let request = hyper::Request::get(&self.url)
            .header(hyper::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::new())
            .map_err(|e| fetch_error(e.to_string()))?;
        let body = tokio::time::timeout(FETCH_TIMEOUT, async {
            let response = client
                .request(request)
                .await
                .map_err(|e| fetch_error(e.to_string()))?;
            if !response.status().is_success() {
                return Err(fetch_error(format!("status {}", response.status())));
            }
            http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .map_err(|e| fetch_error(format!("reading the document: {e}")))
        })
        .await
        .map_err(|_| fetch_error(format!("no answer within {FETCH_TIMEOUT:?}")))??;
        let keys = parse(&body).map_err(|reason| JwksError::Document {
            url: self.url.clone(),
            reason,
        })?;
        if keys.is_empty() {
            return Err(JwksError::NoKeys {
                url: self.url.clone(),
            });
        }
        let count = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        tracing::debug!(url = %self.url, keys = count, "token keys loaded");
        Ok(count)
    }

    /// Loads the set at start (a few tries), then refreshes it every `every`, for as long as
    /// the process runs. A start without keys is logged; tokens are answered 503 until the
    /// set loads.
    pub fn spawn(self: &Arc<Self>, every: Duration) {
        let jwks = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            while let Err(err) = jwks.refresh().await {
                tracing::warn!(error = %err, retry_in = ?delay, "cannot load the token keys");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) = jwks.refresh().await {
                    tracing::warn!(error = %err, "cannot refresh the token keys; keeping the cached ones");
                }
            }
        });
    }
}

/// The usable signing keys of a JWKS document, by `kid`.
fn parse(document: &[u8]) -> Result<HashMap<String, Arc<Key>>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(document).map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    for (position, value) in document.keys.into_iter().enumerate() {
        // One key the library cannot read does not spoil the others.
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            tracing::debug!(position, "skipping a JWKS entry that is not a key");
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let Some(algorithm) = algorithm(&jwk) else {
            continue;
        };
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        keys.insert(
            kid,
            Arc::new(Key {
                decoding,
                algorithm,
            }),
        );
    }
    Ok(keys)
}

/// The algorithm a key verifies: its `alg`, or the usual one of its type. Symmetric keys and
/// encryption algorithms are refused.
fn algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let from_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        _ => return None,
    };
    let Some(stated) = jwk.common.key_algorithm else {
        return Some(from_type);
    };
    let stated = match stated {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    };
    // An `alg` of another key type (an EC key claiming RS256) is a broken entry.
    let same_family = matches!(
        (from_type, stated),
        (
            Algorithm::RS256,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) | (Algorithm::ES256, Algorithm::ES256)
            | (Algorithm::ES384, Algorithm::ES384)
            | (Algorithm::EdDSA, Algorithm::EdDSA)
    );
    same_family.then_some(stated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, extra: &str) -> String {
        format!(
            r#"{{"kty":"EC","crv":"P-256","x":"pF3FQL6rd_3gfgRkwmuX52r6zJFo2V0lADyUjotDMz8","y":"xkFb4NJBEU6OzQx4ywNL0EXhN6FQa81NaiwfheDISkQ","kid":"{kid}"{extra}}}"#
        )
    }

    #[test]
    fn takes_signing_keys_and_skips_the_rest() {
        let document = format!(
            r#"{{"keys":[{},{},{},{},{{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},{{"kty":"nonsense"}}]}}"#,
            key("plain", ""),
            key("stated", r#","alg":"ES256","use":"sig""#),
            key("encryption", r#","use":"enc""#),
            key("mismatch", r#","alg":"RS256""#),
        );
        let keys = parse(document.as_bytes()).expect("a key set");
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["plain", "stated"]);
        assert!(keys.values().all(|k| k.algorithm == Algorithm::ES256));
        assert!(parse(b"{\"nokeys\":1}").is_err());
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn lookup_by_kid_and_a_single_key_without_kid() {
        let jwks = Jwks::new("http://127.0.0.1:1/jwks");
        assert!(matches!(jwks.lookup(Some("a")), Lookup::NotLoaded));
        let one = parse(format!(r#"{{"keys":[{}]}}"#, key("a", "")).as_bytes()).expect("set");
        *jwks.keys.write().expect("lock") = Arc::new(one);
        assert!(matches!(jwks.lookup(Some("a")), Lookup::Found(_)));
        assert!(matches!(jwks.lookup(None), Lookup::Found(_)));
        assert!(matches!(jwks.lookup(Some("b")), Lookup::Unknown));
        let two = parse(format!(r#"{{"keys":[{},{}]}}"#, key("a", ""), key("b", "")).as_bytes())
            .expect("set");
        *jwks.keys.write().expect("lock") = Arc::new(two);
        assert!(matches!(jwks.lookup(None), Lookup::Unknown));
    }
}
