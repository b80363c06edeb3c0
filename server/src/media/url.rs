//! Signed media URLs: a link to one file that works without a token until it expires (for
//! `<img src>`, `<video>`, native players). It carries the tenant, the expiry and an
//! HMAC-SHA256 over both and the file's id; the file must still exist when it is used.
//!
//! The key is `media_url_secret` if set, otherwise derived from the HS256 token secret (every
//! node sharing it accepts the others' links), otherwise (tokens verified with a public key and
//! no secret set) random at start: links then work on this node until it restarts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};

use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// An HMAC keyed with `key` (HMAC takes keys of any length: this cannot fail).
fn keyed(key: &[u8]) -> HmacSha256 {
    #[allow(clippy::expect_used, reason = "HMAC accepts keys of every length")]
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of every length")
}

/// The path signed links point at (`{id}` is the file's id).
pub const SIGNED_PATH: &str = "/v1/signed/media/{id}";

/// A key derived from the HS256 token secret, for links only (domain-separated, so a link's
/// signature says nothing about the token key).
pub fn derive_url_key(secret: &[u8]) -> [u8; 32] {
    let mut mac = keyed(secret);
    mac.update(b"confab signed media urls v1");
    mac.finalize().into_bytes().into()
}

/// Signs and checks media links.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

/// The query of a signed link, as [`UrlSigner::sign`] writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkParams {
    pub tenant: String,
    pub expires: u64,
    pub sig: String,
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// The signature does not match (a changed tenant, id, expiry, or signature).
    Tampered,
    Expired,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl UrlSigner {
    /// A signer with `secret` (hashed to the key: any length works).
    pub fn from_secret(secret: &[u8]) -> UrlSigner {
        UrlSigner {
            key: derive_url_key(secret),
        }
    }

    pub fn from_key(key: [u8; 32]) -> UrlSigner {
        UrlSigner { key }
    }

    /// A signer with a random key (links die with the process).
    pub fn random() -> UrlSigner {
        UrlSigner {
            key: rand::random(),
        }
    }

    fn mac(&self, tenant: &str, id: &str, expires: u64) -> HmacSha256 {
        let mut mac = keyed(&self.key);
        // Lengths first: no two (tenant, id) pairs write the same bytes.
        for part in [tenant.as_bytes(), id.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&expires.to_be_bytes());
        mac
    }

    /// The link to file `id` of `tenant`, valid for `ttl`: its path and query, and its expiry
    /// (Unix seconds).
    pub fn sign(&self, tenant: &str, id: &str, ttl: Duration) -> (String, u64) {
        let expires = unix_now().saturating_add(ttl.as_secs().max(1));
        let signature = hex::encode(self.mac(tenant, id, expires).finalize().into_bytes());
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("tenant", tenant)
            .append_pair("expires", &expires.to_string())
            .append_pair("sig", &signature)
            .finish();
        (
            format!("{}?{query}", SIGNED_PATH.replace("{id}", id)),
            expires,
        )
    }

    /// Checks a link's signature, then its expiry (in constant time over the signature).
    pub fn verify(
        &self,
        tenant: &str,
        id: &str,
        expires: u64,
        signature: &str,
    ) -> Result<(), LinkError> {
        let signature = hex::decode(signature).map_err(|_| LinkError::Tampered)?;
        self.mac(tenant, id, expires)
            .verify_slice(&signature)
            .map_err(|_| LinkError::Tampered)?;
        if expires < unix_now() {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(link: &str) -> Vec<(String, String)> {
        let (_, query) = link.split_once('?').expect("a query");
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn a_link_verifies_until_it_is_changed_or_expires() {
        let signer = UrlSigner::from_secret(b"a secret of any length");
        let (link, expires) = signer.sign("acme & co", "file1", Duration::from_secs(60));
        assert!(
            link.starts_with("/v1/signed/media/file1?tenant=acme+%26+co&expires="),
            "{link}"
        );
        let sig = query(&link)[2].1.clone();
        assert_eq!(signer.verify("acme & co", "file1", expires, &sig), Ok(()));
        for (tenant, id, at) in [
            ("acme", "file1", expires),
            ("acme & co", "file2", expires),
            ("acme & co", "file1", expires + 3600),
        ] {
            assert_eq!(
                signer.verify(tenant, id, at, &sig),
                Err(LinkError::Tampered)
            );
        }
        assert_eq!(
            signer.verify("acme & co", "file1", expires, "zz"),
            Err(LinkError::Tampered)
        );
        let other = UrlSigner::from_secret(b"another secret");
        assert_eq!(
            other.verify("acme & co", "file1", expires, &sig),
            Err(LinkError::Tampered)
        );
        // Past its expiry (signed in the past), a genuine link is refused as expired.
        let past = unix_now() - 10;
        let old = hex::encode(signer.mac("t", "f", past).finalize().into_bytes());
        assert_eq!(signer.verify("t", "f", past, &old), Err(LinkError::Expired));
    }
}
