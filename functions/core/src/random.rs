//! Randomness from the operating system.

/// 96 random bits, hex.
pub fn new_nonce() -> String {
    let mut b = [0u8; 12];
    // getrandom only fails where the OS has no entropy source at all; an all-zero nonce is still
    // covered by the single-use check in the store.
    if getrandom::getrandom(&mut b).is_err() {
        tracing::error!("no OS randomness for a link nonce");
    }
    hex::encode(b)
}

/// A number in `0..n` (0 when `n` is 0), for spreading retries: not for secrets.
pub fn below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    if n == 0 || getrandom::getrandom(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b) % n
}

/// 256 random bits, base64url: a secret such as a PKCE verifier. Unlike a nonce, a secret must
/// never be predictable: no entropy, no secret.
pub fn new_secret() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}
