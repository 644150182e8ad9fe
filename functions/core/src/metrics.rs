//! Business metrics as CloudWatch Embedded Metric Format (EMF) records: one JSON line on stdout
//! per set, which CloudWatch Logs turns into metrics in the `Dossier` namespace with no API call
//! and no extra latency. The stages say what happened; the adapter writes the line.

use serde_json::{json, Map, Value};
use std::sync::Mutex;

pub const NAMESPACE: &str = "Dossier";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    /// A plain number (money, ratios).
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::None => "None",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: Unit,
}

impl Metric {
    pub fn count(name: &'static str, value: f64) -> Metric {
        Metric { name, value, unit: Unit::Count }
    }
    pub fn ms(name: &'static str, value: i64) -> Metric {
        Metric { name, value: value.max(0) as f64, unit: Unit::Milliseconds }
    }
    pub fn usd(name: &'static str, value: f64) -> Metric {
        Metric { name, value, unit: Unit::None }
    }
}

/// Metrics sharing one set of dimensions (e.g. `Source=virustotal`). Every set also carries the
/// `Function` dimension, added when the line is rendered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricSet {
    pub dimensions: Vec<(&'static str, String)>,
    pub metrics: Vec<Metric>,
}

impl MetricSet {
    pub fn new(metrics: Vec<Metric>) -> MetricSet {
        MetricSet { dimensions: Vec::new(), metrics }
    }
    pub fn with_dimension(mut self, name: &'static str, value: impl Into<String>) -> MetricSet {
        self.dimensions.push((name, value.into()));
        self
    }
}

pub trait Metrics: Send + Sync {
    fn emit(&self, function: &str, set: MetricSet);
}

/// Tests and local runs that do not look at metrics.
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn emit(&self, _function: &str, _set: MetricSet) {}
}

/// Keeps every set, for tests.
#[derive(Default)]
pub struct RecordingMetrics(Mutex<Vec<(String, MetricSet)>>);

impl RecordingMetrics {
    pub fn sets(&self) -> Vec<(String, MetricSet)> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    /// Every value recorded under `name`.
    pub fn values(&self, name: &str) -> Vec<f64> {
        self.sets().iter().flat_map(|(_, s)| s.metrics.iter().filter(|m| m.name == name).map(|m| m.value).collect::<Vec<_>>()).collect()
    }
}

impl Metrics for RecordingMetrics {
    fn emit(&self, function: &str, set: MetricSet) {
        if let Ok(mut v) = self.0.lock() {
            v.push((function.to_string(), set));
        }
    }
}

/// The EMF line for `set` (specification: CloudWatch "Embedded metric format specification").
pub fn emf_line(function: &str, set: &MetricSet, timestamp_ms: i64) -> String {
    let mut root = Map::new();
    let mut dimension_names = vec![Value::from("Function")];
    root.insert("Function".into(), Value::from(function));
    for (name, value) in &set.dimensions {
        dimension_names.push(Value::from(*name));
        root.insert((*name).into(), Value::from(value.as_str()));
    }
    let definitions: Vec<Value> = set.metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()})).collect();
    for m in &set.metrics {
        root.insert(m.name.into(), json!(m.value));
    }
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dimension_names], "Metrics": definitions}],
        }),
    );
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_follows_the_specification() {
        let set = MetricSet::new(vec![Metric::count("SourceErrors", 1.0), Metric::ms("SourceLatency", 312)])
            .with_dimension("Source", "virustotal");
        let line: Value = serde_json::from_str(&emf_line("enrich", &set, 1_764_000_000_000)).expect("json");
        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], 1_764_000_000_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Dossier");
        assert_eq!(directive["Dimensions"], json!([["Function", "Source"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "SourceErrors", "Unit": "Count"}, {"Name": "SourceLatency", "Unit": "Milliseconds"}])
        );
        // Every dimension and metric named in the directive is a member of the root object.
        assert_eq!((line["Function"].as_str(), line["Source"].as_str()), (Some("enrich"), Some("virustotal")));
        assert_eq!((line["SourceErrors"].as_f64(), line["SourceLatency"].as_f64()), (Some(1.0), Some(312.0)));
    }

    #[test]
    fn negative_durations_are_clamped() {
        assert_eq!(Metric::ms("TimeToDossier", -5).value, 0.0);
    }
}
