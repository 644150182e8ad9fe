//! Any `get_incident_extra_data` reply: parsed and every indicator extracted, or refused with a
//! reason; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(incidents) = dossier_core::xdr::parse_extra_data(text) {
        let names = dossier_core::domain::InternalNames::default();
        for incident in &incidents {
            let extraction = dossier_core::extract::extract(incident, &names);
            assert!(extraction.indicators.iter().all(|i| !i.value.is_empty()), "an empty indicator was extracted");
        }
    }
});
