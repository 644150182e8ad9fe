//! CPU spent per case in the pure stages (no I/O): parsing the XDR payload, extracting and
//! classifying indicators, inferring ATT&CK techniques, building the deterministic dossier and its
//! comment, and pseudonymizing the evidence for the model. `cargo bench -p dossier-local`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dossier_core::case::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::dossier::{deterministic, render_comment};
use dossier_core::extract::extract;
use dossier_core::indicator::InternalNames;
use dossier_core::stages::apply_extra_data;
use dossier_core::synthesis::Pseudonyms;
use dossier_core::xdr::parse_extra_data;
use dossier_local::samples::SAMPLES;

fn collected_case(raw: &str) -> Case {
    let names = InternalNames::default();
    let mut data = parse_extra_data(raw).expect("sample parses");
    let first = data.swap_remove(0);
    let extraction = extract(&first, &names);
    let key = CaseKey::new("bench", &first.incident.incident_id).expect("sample id is a valid key");
    let mut case = Case::new(key, Trigger::Local, IncidentHint::default(), 0);
    apply_extra_data(&mut case, &first, extraction, 500);
    case
}

fn per_case(c: &mut Criterion) {
    let names = InternalNames::default();
    for sample in SAMPLES {
        c.bench_function(&format!("collect: parse + extract + infer ({})", sample.name), |b| {
            b.iter(|| collected_case(black_box(sample.extra_data)))
        });
        let case = collected_case(sample.extra_data);
        c.bench_function(&format!("dossier: deterministic + comment ({})", sample.name), |b| {
            b.iter(|| {
                let d = deterministic(black_box(&case), &[], &[]);
                render_comment(&case, "draft-1", &d, &[])
            })
        });
        let evidence = serde_json::to_string(&case.indicators).expect("indicators serialize");
        c.bench_function(&format!("synthesis: pseudonymize evidence ({})", sample.name), |b| {
            b.iter(|| {
                let mut p = Pseudonyms::for_case(black_box(&case));
                p.learn(&evidence, &names);
                p.hide(&evidence)
            })
        });
    }
}

criterion_group!(benches, per_case);
criterion_main!(benches);
