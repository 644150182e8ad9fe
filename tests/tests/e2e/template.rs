//! The SAM template holds the timing rules the exactly-once design rests on: a lease outlives the
//! timeout of the function that takes it; a queue's visibility timeout is at least six times its
//! function's timeout (AWS's advice for SQS event sources); a function whose one message can take
//! most of its timeout reads one message at a time; every queue has a DLQ with an alarm; the
//! reconciler runs on a schedule; every metric the functions emit is on the dashboard or alarmed.
//! Read from `template.yaml` itself.

use std::collections::BTreeMap;
use yaml_rust2::{Yaml, YamlLoader};

fn template() -> Yaml {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    YamlLoader::load_from_str(&text).expect("template.yaml is YAML").remove(0)
}

fn num(y: &Yaml) -> Option<i64> {
    y.as_i64().or_else(|| y.as_str().and_then(|s| s.trim().parse().ok()))
}

/// `!GetAtt Name.Arn` (the loader keeps the tagged value as its plain string).
fn get_att_name(y: &Yaml) -> Option<String> {
    y.as_str().map(|s| s.trim_end_matches(".Arn").to_string())
}

struct Function {
    name: String,
    binary: String,
    timeout: i64,
    memory_mb: i64,
    lease: Option<i64>,
    /// (queue logical id, batch size)
    queues: Vec<(String, i64)>,
    schedules: usize,
}

fn functions(t: &Yaml) -> Vec<Function> {
    let default_timeout = num(&t["Globals"]["Function"]["Timeout"]).expect("Globals.Function.Timeout");
    let default_memory = num(&t["Globals"]["Function"]["MemorySize"]).expect("Globals.Function.MemorySize");
    let resources = t["Resources"].as_hash().expect("Resources");
    let mut out = Vec::new();
    for (name, r) in resources {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let p = &r["Properties"];
        let mut queues = Vec::new();
        let mut schedules = 0;
        if let Some(events) = p["Events"].as_hash() {
            for (_, e) in events {
                match e["Type"].as_str() {
                    Some("SQS") => queues
                        .push((get_att_name(&e["Properties"]["Queue"]).expect("queue"), num(&e["Properties"]["BatchSize"]).unwrap_or(10))),
                    Some("Schedule" | "ScheduleV2") => schedules += 1,
                    _ => {}
                }
            }
        }
        out.push(Function {
            name: name.as_str().unwrap_or_default().to_string(),
            binary: r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap_or_default().to_string(),
            timeout: num(&p["Timeout"]).unwrap_or(default_timeout),
            memory_mb: num(&p["MemorySize"]).unwrap_or(default_memory),
            lease: num(&p["Environment"]["Variables"]["DOSSIER_WRITE_LEASE_SECONDS"]),
            queues,
            schedules,
        });
    }
    out
}

#[test]
fn leases_outlive_their_functions_and_queues_wait_six_timeouts() {
    let t = template();
    let resources = &t["Resources"];
    let fs = functions(&t);
    assert!(fs.len() >= 10, "functions read: {}", fs.len());
    let mut problems = Vec::new();
    for f in &fs {
        // Functions that take leases (synthesis, posting, executing) must say how long.
        if matches!(f.binary.as_str(), "synthesize" | "writeback") {
            match f.lease {
                Some(lease) if lease > f.timeout => {}
                Some(lease) => problems.push(format!("{}: lease {lease} s is not longer than the {} s timeout", f.name, f.timeout)),
                None => problems.push(format!("{}: takes leases but sets no DOSSIER_WRITE_LEASE_SECONDS", f.name)),
            }
        }
        for (queue, batch) in &f.queues {
            let visibility = num(&resources[queue.as_str()]["Properties"]["VisibilityTimeout"]).unwrap_or(30);
            if visibility < 6 * f.timeout {
                problems.push(format!("{queue}: visibility {visibility} s is under 6 x the {} s timeout of {}", f.timeout, f.name));
            }
            if matches!(f.binary.as_str(), "synthesize" | "writeback" | "collect") && *batch != 1 {
                problems.push(format!("{}: batch size {batch}; one message can take most of its timeout", f.name));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_queue_has_a_dlq_with_an_alarm_and_the_reconciler_runs_on_a_schedule() {
    let t = template();
    let resources = t["Resources"].as_hash().expect("Resources");
    let alarmed: Vec<String> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .filter_map(|r| r["Properties"]["Dimensions"][0]["Value"].as_str().map(|v| v.trim_end_matches(".QueueName").to_string()))
        .collect();
    let mut dlqs: BTreeMap<String, bool> = BTreeMap::new();
    for (name, r) in resources {
        let name = name.as_str().unwrap_or_default();
        if r["Type"].as_str() != Some("AWS::SQS::Queue") {
            continue;
        }
        if name.ends_with("DLQ") {
            dlqs.insert(name.to_string(), alarmed.iter().any(|a| a == name));
        } else {
            let dlq = get_att_name(&r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]);
            assert!(dlq.is_some_and(|d| resources.contains_key(&Yaml::String(d))), "{name} has no DLQ");
        }
    }
    let unalarmed: Vec<_> = dlqs.iter().filter(|(_, a)| !**a).map(|(n, _)| n).collect();
    assert!(unalarmed.is_empty(), "DLQs without an alarm: {unalarmed:?}");
    let reconcile = functions(&t).into_iter().find(|f| f.binary == "reconcile").expect("a reconcile function");
    assert_eq!(reconcile.schedules, 2, "the reconciler runs on a schedule, and the hunt hourly");
    assert!(resources.contains_key(&Yaml::String("StuckCasesAlarm".into())));
    // The due index the reconciler reads exists on both tables it reads.
    for table in ["CasesTable", "EffectsTable"] {
        let index = &t["Resources"][table]["Properties"]["GlobalSecondaryIndexes"][0];
        assert_eq!(index["IndexName"].as_str(), Some("due"), "{table}");
    }
}

/// The bench prices and projects each function at its memory size: the sizes it assumes are
/// the template's (chosen by measured cost × duration, README "Memory per function").
#[test]
fn the_bench_prices_functions_at_the_template_memory_sizes() {
    let fs = functions(&template());
    for f in fs.iter().filter(|f| !f.binary.is_empty()) {
        assert_eq!(f.memory_mb as f64, dossier_local::cost::memory_mb(&f.binary), "{} ({})", f.name, f.binary);
    }
}

/// The metric names the functions emit (`Metric::count("Name", …)`, `Metric::ms(…)`, …), read
/// from their source.
fn emitted_metrics() -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("readable source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("readable source file");
                for call in text.split("Metric::").skip(1) {
                    let Some((_, rest)) = call.split_once("(\"") else { continue };
                    let name: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
                    if !name.is_empty() && !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions")), &mut out);
    out.sort();
    out
}

#[test]
fn every_metric_the_functions_emit_is_on_the_dashboard_or_alarmed() {
    let t = template();
    let resources = t["Resources"].as_hash().expect("Resources");
    let dashboard = resources
        .values()
        .find(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Dashboard"))
        .and_then(|r| r["Properties"]["DashboardBody"].as_str())
        .expect("a dashboard");
    let alarmed: Vec<&str> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .filter_map(|r| r["Properties"]["MetricName"].as_str())
        .collect();
    let emitted = emitted_metrics();
    assert!(emitted.len() >= 15, "the scan finds the metrics: {emitted:?}");
    let unseen: Vec<&String> = emitted
        .iter()
        .filter(|m| {
            !dashboard.contains(&format!("\"{m}\"")) && !dashboard.contains(&format!("\\\"{m}\\\"")) && !alarmed.contains(&m.as_str())
        })
        .collect();
    assert!(unseen.is_empty(), "metrics emitted but neither on the dashboard nor alarmed: {unseen:?}");
}
