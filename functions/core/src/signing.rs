//! Signed approval links: HMAC-SHA256 over claims that bind case, action, scope, approver, expiry
//! and a nonce, under a key id so a key can be rotated without breaking open links.
//!
//! Token: `<kid>.<base64url(claims JSON)>.<base64url(HMAC-SHA256(key, "<kid>.<claims>"))>`.
//!
//! The same keys seal the approver sign-in cookies (`seal` / `open`), under a purpose that is
//! part of the MAC: a cookie never verifies as a link, nor a link as a cookie.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::CaseKey;

type HmacSha256 = Hmac<Sha256>;

/// What a link allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Approve or reject one proposed action.
    DecideAction,
    /// Say whether a dossier was useful (counted per prompt version).
    Feedback,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    pub case: CaseKey,
    pub action: String,
    pub scope: Scope,
    pub approver: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    pub nonce: String,
}

#[derive(Clone)]
pub struct SigningKey {
    pub id: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey").field("id", &self.id).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed or truncated")]
    Malformed,
    #[error("the link was signed with a key that is no longer valid")]
    UnknownKey,
    #[error("the link's signature does not match: it was altered")]
    BadSignature,
    #[error("the link expired")]
    Expired { exp: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no signing key configured")]
    NoKey,
    #[error("signing key `{0}` is shorter than 32 bytes")]
    TooShort(String),
    #[error("signing key id `{0}` must be 1-32 letters, digits, '-' or '_'")]
    BadId(String),
}

/// Signs with the current key; verifies with the current and the previous ones.
#[derive(Clone, Debug)]
pub struct LinkSigner {
    keys: Vec<SigningKey>,
}

impl LinkSigner {
    /// `keys[0]` signs; every key verifies.
    pub fn new(keys: Vec<SigningKey>) -> Result<LinkSigner, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKey);
        }
        for k in &keys {
            if k.id.is_empty() || k.id.len() > 32 || !k.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(KeyError::BadId(k.id.clone()));
            }
            if k.secret.len() < 32 {
                return Err(KeyError::TooShort(k.id.clone()));
            }
        }
        Ok(LinkSigner { keys })
    }

    /// Parses the secret's JSON form `{"current": {"id", "secret"}, "previous": {...}}` or a bare string.
    pub fn from_secret(text: &str) -> Result<LinkSigner, KeyError> {
        #[derive(Deserialize)]
        struct K {
            id: String,
            secret: String,
        }
        #[derive(Deserialize)]
        struct S {
            current: K,
            previous: Option<K>,
        }
        match serde_json::from_str::<S>(text) {
            Ok(s) => {
                let mut keys = vec![SigningKey { id: s.current.id, secret: s.current.secret.into_bytes() }];
                if let Some(p) = s.previous {
                    keys.push(SigningKey { id: p.id, secret: p.secret.into_bytes() });
                }
                LinkSigner::new(keys)
            }
            Err(_) => LinkSigner::new(vec![SigningKey { id: "k1".into(), secret: text.trim().as_bytes().to_vec() }]),
        }
    }

    fn mac(key: &SigningKey, purpose: &str, signed: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&key.secret).expect("HMAC accepts any key length");
        // Links keep the MAC input they always had; other purposes are prefixed.
        if !purpose.is_empty() {
            mac.update(purpose.as_bytes());
            mac.update(b"|");
        }
        mac.update(signed.as_bytes());
        mac
    }

    /// Signs `value` for `purpose` with the current key.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let key = &self.keys[0];
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("sealed values serialise"));
        let signed = format!("{}.{payload}", key.id);
        let sig = URL_SAFE_NO_PAD.encode(Self::mac(key, purpose, &signed).finalize().into_bytes());
        format!("{signed}.{sig}")
    }

    /// Checks the signature for `purpose` (constant time) and reads the value. Expiry is the
    /// caller's: each sealed value carries its own.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, token: &str) -> Result<T, LinkError> {
        if token.len() > 4096 {
            return Err(LinkError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(kid), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(LinkError::Malformed);
        };
        let key = self.keys.iter().find(|k| k.id == kid).ok_or(LinkError::UnknownKey)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| LinkError::Malformed)?;
        Self::mac(key, purpose, &format!("{kid}.{payload}")).verify_slice(&sig).map_err(|_| LinkError::BadSignature)?;
        let raw = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Malformed)?;
        serde_json::from_slice(&raw).map_err(|_| LinkError::Malformed)
    }

    /// A detached tag over `parts` for `purpose` with the current key: `<kid>.<base64url(MAC)>`.
    /// Each part is length-prefixed, so no other split of the same bytes carries the same tag.
    pub fn tag(&self, purpose: &str, parts: &[&[u8]]) -> String {
        let key = &self.keys[0];
        format!("{}.{}", key.id, URL_SAFE_NO_PAD.encode(Self::parts_mac(key, purpose, parts).finalize().into_bytes()))
    }

    /// Whether `tag` is a tag over `parts` for `purpose` under one of the keys (constant time).
    pub fn check_tag(&self, purpose: &str, parts: &[&[u8]], tag: &str) -> bool {
        let Some((kid, sig)) = tag.split_once('.') else { return false };
        let (Some(key), Ok(sig)) = (self.keys.iter().find(|k| k.id == kid), URL_SAFE_NO_PAD.decode(sig)) else {
            return false;
        };
        Self::parts_mac(key, purpose, parts).verify_slice(&sig).is_ok()
    }

    fn parts_mac(key: &SigningKey, purpose: &str, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&key.secret).expect("HMAC accepts any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"|");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    pub fn sign(&self, claims: &LinkClaims) -> String {
        self.seal(LINK_PURPOSE, claims)
    }

    /// Checks signature (constant time), then expiry. Single use is enforced by the store, not here.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<LinkClaims, LinkError> {
        let claims: LinkClaims = self.open(LINK_PURPOSE, token)?;
        if now_s >= claims.exp {
            return Err(LinkError::Expired { exp: claims.exp });
        }
        Ok(claims)
    }
}

/// Links predate purposes: theirs is empty, so links already sent stay valid.
const LINK_PURPOSE: &str = "";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::new_nonce;

    fn key(id: &str, fill: u8) -> SigningKey {
        SigningKey { id: id.into(), secret: vec![fill; 32] }
    }

    fn claims() -> LinkClaims {
        LinkClaims {
            case: CaseKey::new("acme", "42").unwrap(),
            action: "a1".into(),
            scope: Scope::DecideAction,
            approver: "lead@example.com".into(),
            exp: 1_000,
            nonce: new_nonce(),
        }
    }

    #[test]
    fn signs_and_verifies() {
        let s = LinkSigner::new(vec![key("k1", 7)]).unwrap();
        let t = s.sign(&claims());
        assert_eq!(s.verify(&t, 999).unwrap().action, "a1");
        assert_eq!(s.verify(&t, 1_000), Err(LinkError::Expired { exp: 1_000 }));
    }

    #[test]
    fn any_tampered_field_fails() {
        let s = LinkSigner::new(vec![key("k1", 7)]).unwrap();
        let base = claims();
        let t = s.sign(&base);
        let (head, sig) = t.rsplit_once('.').unwrap();
        let kid = head.split('.').next().unwrap();
        let variants: Vec<LinkClaims> = vec![
            LinkClaims { case: CaseKey::new("acme", "43").unwrap(), ..base.clone() },
            LinkClaims { case: CaseKey::new("evil", "42").unwrap(), ..base.clone() },
            LinkClaims { action: "a2".into(), ..base.clone() },
            LinkClaims { approver: "mallory@example.com".into(), ..base.clone() },
            LinkClaims { exp: 9_999_999, ..base.clone() },
            LinkClaims { nonce: "00".into(), ..base.clone() },
        ];
        for v in variants {
            let forged = format!("{kid}.{}.{sig}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap()));
            assert_eq!(s.verify(&forged, 0), Err(LinkError::BadSignature), "{v:?}");
        }
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(s.verify(std::str::from_utf8(&flipped).unwrap(), 0).is_err());
        assert_eq!(s.verify("garbage", 0), Err(LinkError::Malformed));
        assert!(matches!(s.verify(&t[..t.len() - 5], 0), Err(LinkError::BadSignature | LinkError::Malformed)));
    }

    #[test]
    fn rotation_keeps_open_links_valid() {
        let old = LinkSigner::new(vec![key("k1", 1)]).unwrap();
        let t = old.sign(&claims());
        let rotated = LinkSigner::new(vec![key("k2", 2), key("k1", 1)]).unwrap();
        assert!(rotated.verify(&t, 0).is_ok());
        let retired = LinkSigner::new(vec![key("k3", 3), key("k2", 2)]).unwrap();
        assert_eq!(retired.verify(&t, 0), Err(LinkError::UnknownKey));
        // A foreign key with the same id does not verify.
        let foreign = LinkSigner::new(vec![key("k1", 9)]).unwrap();
        assert_eq!(foreign.verify(&t, 0), Err(LinkError::BadSignature));
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_purpose() {
        let s = LinkSigner::new(vec![key("k1", 7)]).unwrap();
        let link = s.sign(&claims());
        let cookie = s.seal("signin", &claims());
        assert!(s.open::<LinkClaims>("signin", &cookie).is_ok());
        assert_eq!(s.open::<LinkClaims>("session", &cookie), Err(LinkError::BadSignature));
        assert_eq!(s.verify(&cookie, 0), Err(LinkError::BadSignature));
        assert_eq!(s.open::<LinkClaims>("signin", &link), Err(LinkError::BadSignature));
    }

    #[test]
    fn a_detached_tag_checks_its_parts_purpose_and_key() {
        let s = LinkSigner::new(vec![key("k1", 7)]).unwrap();
        let t = s.tag("snapshot", &[b"1", b"body"]);
        assert!(s.check_tag("snapshot", &[b"1", b"body"], &t));
        assert!(!s.check_tag("snapshot", &[b"1", b"bodY"], &t));
        assert!(!s.check_tag("snapshot", &[b"2", b"body"], &t));
        assert!(!s.check_tag("snapshot", &[b"1b", b"ody"], &t), "parts are length-prefixed");
        assert!(!s.check_tag("cookie", &[b"1", b"body"], &t));
        assert!(!LinkSigner::new(vec![key("k1", 8)]).unwrap().check_tag("snapshot", &[b"1", b"body"], &t));
        assert!(LinkSigner::new(vec![key("k2", 2), key("k1", 7)]).unwrap().check_tag("snapshot", &[b"1", b"body"], &t));
        for bad in ["", "k1", "k1.", "k1.!!", "k9.AAAA", &t[..t.len() - 3]] {
            assert!(!s.check_tag("snapshot", &[b"1", b"body"], bad), "{bad}");
        }
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(LinkSigner::new(vec![]).unwrap_err(), KeyError::NoKey);
        assert!(matches!(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![1; 8] }]), Err(KeyError::TooShort(_))));
        let s = LinkSigner::from_secret(r#"{"current": {"id": "k2", "secret": "0123456789abcdef0123456789abcdef"}, "previous": {"id": "k1", "secret": "fedcba9876543210fedcba9876543210"}}"#).unwrap();
        assert_eq!(s.keys.len(), 2);
        assert!(!format!("{:?}", s).contains("0123"));
    }
}
