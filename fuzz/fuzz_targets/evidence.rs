//! Any `get_incident_extra_data` reply taken as far as the model: collected into a case, its
//! deterministic dossier written and rendered (comment and page), and its evidence masked into
//! the prompt — alert text is the attacker's, and masking rewrites it around the case's internal
//! values; never a panic, and no host name of the case left in clear in the evidence.
#![no_main]
use dossier_core::config::Phase;
use dossier_core::domain::{Case, CaseKey, IncidentHint, IndicatorKind, InternalNames, Trigger};
use dossier_core::dossier::{deterministic, render_comment, render_html};
use dossier_core::stages::apply_extra_data;
use dossier_core::synthesis::{build_pack, Pseudonyms, DEFAULT_TOKEN_BUDGET};
use dossier_core::text::fold;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mut incidents) = dossier_core::xdr::parse_extra_data(text) else { return };
    if incidents.is_empty() {
        return;
    }
    let first = incidents.swap_remove(0);
    let Ok(key) = CaseKey::new("fuzz", &first.incident.incident_id) else { return };
    let names = InternalNames::default();
    let extraction = dossier_core::extract::extract(&first, &names);
    let mut case = Case::new(key, Trigger::Local, IncidentHint::default(), 0, &Default::default());
    apply_extra_data(&mut case, &first, extraction, 500);
    let dossier = deterministic(&case, &[], &[]);
    assert!(!render_comment(&case, "draft-1", &dossier, &[]).is_empty());
    assert!(!render_html(&case, &dossier, &[]).is_empty());
    let mut pseudonyms = Pseudonyms::for_case(&case);
    let pack = build_pack(&case, &[], &dossier, &mut pseudonyms, &names, Phase(2), DEFAULT_TOKEN_BUDGET);
    // The evidence is one JSON document between the tags; none of its strings holds a host
    // name of the case in clear, in any case or spelling masking reads as the same (the keys are
    // Dossier's own words). Names under
    // three bytes are not masked (a token for `9` would eat every digit 9); the tokens are left
    // out of the search (a host named `host-1` is spelled like its own token).
    let evidence = pack.prompt.split_once("<evidence>\n").and_then(|(_, rest)| rest.rsplit_once("\n</evidence>")).map(|(json, _)| json);
    let evidence: serde_json::Value =
        serde_json::from_str(evidence.expect("the prompt holds the evidence tags")).expect("the evidence is JSON");
    let tokens: Vec<&str> = pseudonyms.tokens().collect();
    let mut strings = Vec::new();
    collect_strings(&evidence, &tokens, &mut strings);
    for host in case.indicators.iter().filter(|i| i.kind == IndicatorKind::Hostname && i.value.trim().len() >= 3) {
        let host_lower = fold(&host.value);
        for s in &strings {
            assert!(!s.contains(&host_lower), "host name {:?} in the evidence: {s:?}", host.value);
        }
    }
});

/// Every string value in `v` without the pseudonym tokens, folded as masking compares names.
fn collect_strings(v: &serde_json::Value, tokens: &[&str], out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => {
            let untokened = tokens.iter().fold(s.clone(), |s, t| s.replace(t, " "));
            out.push(fold(&untokened));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_strings(i, tokens, out)),
        serde_json::Value::Object(map) => map.values().for_each(|i| collect_strings(i, tokens, out)),
        _ => {}
    }
}
