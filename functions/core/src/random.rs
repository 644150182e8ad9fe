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

/// 256 random bits, base64url: a secret such as a PKCE verifier. Unlike a nonce, a secret must
/// never be predictable: no entropy, no secret.
pub fn new_secret() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}
