//! Any bytes posted to /webhook: parsed or refused with a reason, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(incident) = dossier_core::xdr::parse_webhook(data) {
        // What parsed must name an incident a case key can be built from, or be refused there.
        let _key = dossier_core::domain::CaseKey::new("fuzz", &incident.incident_id);
    }
});
