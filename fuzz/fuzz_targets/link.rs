//! Any approval-link token: verification refuses forgeries without panicking, and a token is only
//! accepted if it is exactly what the signer issued.
#![no_main]
use libfuzzer_sys::fuzz_target;
use dossier_core::signing::{LinkSigner, SigningKey};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let signer = match LinkSigner::new(vec![SigningKey { id: "k1".into(), secret: vec![0x42; 32] }]) {
        Ok(s) => s,
        Err(_) => return,
    };
    if let Ok(claims) = signer.verify(token, 1_700_000_000) {
        // Accepted: it must carry a valid signature, i.e. re-signing the claims verifies too.
        assert!(signer.verify(&signer.sign(&claims), 1_700_000_000).is_ok());
    }
});
