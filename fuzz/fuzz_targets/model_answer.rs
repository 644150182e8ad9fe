//! Any model answer: alert text can steer the model (prompt injection), so its answer is attacker
//! input. It is refused with a reason, or becomes a dossier whose proposed actions all target
//! entities of the case, labelled AI-generated in the comment and the page, and whose page holds
//! no markup the answer wrote; never a panic.
#![no_main]
use std::sync::OnceLock;

use dossier_core::config::Phase;
use dossier_core::domain::{ActionKind, Case, CaseKey, IncidentHint, IndicatorKind, InternalNames, Trigger};
use dossier_core::dossier::{deterministic, render_comment, render_html, Dossier, LABEL_AI};
use dossier_core::stages::apply_extra_data;
use dossier_core::synthesis::{build_pack, validate, EvidencePack, ModelRun, Pseudonyms, DEFAULT_TOKEN_BUDGET};
use libfuzzer_sys::fuzz_target;

/// Phase 2: answers may propose actions.
const PHASE: Phase = Phase(2);

struct Fixture {
    case: Case,
    baseline: Dossier,
    pack: EvidencePack,
    pseudonyms: Pseudonyms,
}

/// The demo incident collected, its deterministic dossier and its evidence pack, as synthesis
/// builds them before it asks the model.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let names = InternalNames::default();
        let raw = include_str!("../corpus/extra_data/demo_powershell_stager.json");
        let mut data = dossier_core::xdr::parse_extra_data(raw).expect("the demo incident parses");
        let first = data.swap_remove(0);
        let extraction = dossier_core::extract::extract(&first, &names);
        let key = CaseKey::new("fuzz", &first.incident.incident_id).expect("the demo id is a key");
        let mut case = Case::new(key, Trigger::Local, IncidentHint::default(), 0, &Default::default());
        apply_extra_data(&mut case, &first, extraction, 500);
        let baseline = deterministic(&case, &[], &[]);
        let mut pseudonyms = Pseudonyms::for_case(&case);
        let pack = build_pack(&case, &[], &baseline, &mut pseudonyms, &names, PHASE, DEFAULT_TOKEN_BUDGET);
        Fixture { case, baseline, pack, pseudonyms }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let f = fixture();
    let Ok(answer) = validate(text, &f.case, &f.pack, &f.pseudonyms, PHASE) else { return };
    let run = ModelRun { model: "fuzz".into(), ..ModelRun::default() };
    let (dossier, proposals) = answer.into_dossier(&f.case, &f.baseline, &f.pseudonyms, &run, PHASE);
    for p in &proposals {
        let target = p.target.as_str();
        let of_the_case = match p.kind {
            ActionKind::IsolateEndpoint => f.case.endpoints.iter().any(|e| {
                e.endpoint_id.as_deref() == Some(target)
                    || (e.endpoint_id.is_some() && e.host_name.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(target)))
            }),
            ActionKind::RaiseSeverity => matches!(target, "medium" | "high" | "critical"),
            ActionKind::BlockHash => f.case.indicators.iter().any(|i| i.kind.is_hash() && i.value.eq_ignore_ascii_case(target)),
            ActionKind::DisableUser => {
                f.case.indicators.iter().any(|i| i.kind == IndicatorKind::User && i.value.eq_ignore_ascii_case(target))
            }
            ActionKind::MergeCases | ActionKind::OpenInvestigation => false,
        };
        assert!(of_the_case, "a proposal outside the case: {} on {target}", p.kind.as_str());
    }
    assert!(dossier.ai_generated);
    assert!(render_comment(&f.case, "draft-1", &dossier, &[]).contains(LABEL_AI), "the comment lost its AI label");
    let page = render_html(&f.case, &dossier, &[]);
    assert!(page.contains(LABEL_AI), "the page lost its AI label");
    // Every element on the page is one the renderer writes: the answer's text is escaped, so it
    // opens none of its own (no script, no link, no image).
    let written = tags(include_str!("../../functions/core/src/dossier/html.rs"));
    for tag in tags(&page) {
        assert!(written.contains(&tag), "markup from the answer on the page: <{tag}");
    }
});

/// The element names opened in `html`, lower-cased.
fn tags(html: &str) -> Vec<String> {
    let mut found: Vec<String> = html
        .split('<')
        .skip(1)
        .map(|rest| rest.split(|c: char| c.is_whitespace() || c == '>' || c == '/').next().unwrap_or("").to_ascii_lowercase())
        .collect();
    found.sort();
    found.dedup();
    found
}
