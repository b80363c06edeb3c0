//! Who the generated clients are: tokens minted with the server's HS256 secret (users `u0`,
//! `u1`, … of a tenant), or read from a file of ready-made tokens (one per line).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use confab_server::auth::JwtKeys;

/// Lifetime of minted tokens: longer than any bounded run.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// The identities of a run.
pub struct Identities {
    tenant: String,
    source: Source,
}

enum Source {
    /// Mints `u<i>` tokens on demand.
    Secret(Box<JwtKeys>),
    /// Fixed tokens; user `i` is `tokens[i % len]`.
    File(Vec<(String, String)>),
}

impl Identities {
    /// Mints tokens for users `u<i>` of `tenant`.
    pub fn from_secret(secret: &str, tenant: &str) -> anyhow::Result<Identities> {
        let keys = JwtKeys::from_secret(secret.as_bytes())
            .context("the secret must be the server's --jwt-secret (at least 32 bytes)")?;
        Ok(Identities {
            tenant: tenant.to_owned(),
            source: Source::Secret(Box::new(keys)),
        })
    }

    /// Reads one token per line; all must name the same tenant (`tid`). User `i` is the
    /// `i % n`-th token's subject, so fewer tokens than connections means several devices per
    /// user.
    pub fn from_file(path: &Path) -> anyhow::Result<Identities> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?;
        let mut tokens = Vec::new();
        let mut tenant: Option<String> = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let claims = unverified_claims(line)
                .with_context(|| format!("malformed token in {}", path.display()))?;
            match &tenant {
                Some(t) if *t != claims.tid => {
                    bail!("tokens of several tenants in {}", path.display())
                }
                Some(_) => {}
                None => tenant = Some(claims.tid.clone()),
            }
            tokens.push((claims.sub, line.to_owned()));
        }
        let Some(tenant) = tenant else {
            bail!("no token in {}", path.display());
        };
        Ok(Identities {
            tenant,
            source: Source::File(tokens),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The user id of user number `i`.
    pub fn user(&self, i: usize) -> String {
        match &self.source {
            Source::Secret(_) => format!("u{i}"),
            Source::File(tokens) => tokens[i % tokens.len()].0.clone(),
        }
    }

    /// A token of user number `i`.
    pub fn token(&self, i: usize) -> anyhow::Result<String> {
        match &self.source {
            Source::Secret(keys) => Ok(keys.mint(&self.user(i), &self.tenant, None, TOKEN_TTL)?),
            Source::File(tokens) => Ok(tokens[i % tokens.len()].1.clone()),
        }
    }

    /// Tokens of users `0..n`.
    pub fn tokens(&self, n: usize) -> anyhow::Result<Vec<String>> {
        (0..n).map(|i| self.token(i)).collect()
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    tid: String,
}

/// The claims of a JWT, read without checking the signature (the server checks it).
fn unverified_claims(token: &str) -> anyhow::Result<Claims> {
    let payload = token.split('.').nth(1).context("not a JWT")?;
    let json = base64url_decode(payload).context("payload is not base64url")?;
    Ok(serde_json::from_slice(&json)?)
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let produced = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + produced]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_read_back_from_a_file() {
        let ids = Identities::from_secret(&"k".repeat(32), "acme").expect("keys");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        let tokens = ids.tokens(3).expect("mint");
        std::fs::write(&path, tokens.join("\n")).expect("write");
        let from_file = Identities::from_file(&path).expect("read");
        assert_eq!(from_file.tenant(), "acme");
        assert_eq!(from_file.user(1), "u1");
        assert_eq!(from_file.user(4), "u1");
        assert_eq!(from_file.token(2).expect("token"), tokens[2]);
    }

    #[test]
    fn base64url_decodes_unpadded_input() {
        assert_eq!(base64url_decode("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64url_decode("aGV5").as_deref(), Some(&b"hey"[..]));
        assert_eq!(base64url_decode("a"), None);
    }
}
