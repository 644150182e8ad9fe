//! What a case costs on AWS, from what the bench counted: Lambda GB-seconds by function at the
//! template's memory sizes (arm64), DynamoDB request units, SQS requests, the webhook's API
//! Gateway request and model tokens — beside the same work done the usual way, by one Python
//! Lambda calling the sources one after another, priced with the same table.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The date and place of the prices below.
pub const PRICES_AS_OF: &str = "2025-11, us-east-1 public price pages";
/// Lambda on arm64: per GB-second, and per request.
pub const LAMBDA_ARM64_USD_PER_GB_S: f64 = 0.000_013_333_4;
pub const LAMBDA_USD_PER_REQUEST: f64 = 0.20 / 1e6;
/// DynamoDB on-demand (after the November 2024 price reduction): per write and read request unit.
pub const DYNAMODB_USD_PER_WRU: f64 = 0.625 / 1e6;
pub const DYNAMODB_USD_PER_RRU: f64 = 0.125 / 1e6;
/// SQS standard queues, per request (64 KB chunk).
pub const SQS_USD_PER_REQUEST: f64 = 0.40 / 1e6;
/// API Gateway HTTP API, per request (first 300 million a month).
pub const HTTP_API_USD_PER_REQUEST: f64 = 1.00 / 1e6;
/// The model: Anthropic Claude 3.5 Haiku on Amazon Bedrock, per million input and output tokens.
pub const MODEL_USD_PER_M_INPUT: f64 = 0.80;
pub const MODEL_USD_PER_M_OUTPUT: f64 = 4.00;
/// Memory of the usual single Python function (MB).
pub const PYTHON_BASELINE_MB: f64 = 512.0;

/// Memory (MB) of the function serving a queue, as `template.yaml` sets it (synthesize 256,
/// every other function the 128 of the globals).
pub fn memory_mb(_function: &str) -> f64 {
    // Every function runs at the template's global 128 MB (chosen per function: README, "Memory
    // per function"; `tests/tests/e2e/template.rs` keeps this in step with the template).
    TEMPLATE_MEMORY_MB
}

/// The template's global `MemorySize`.
pub const TEMPLATE_MEMORY_MB: f64 = 128.0;

/// The memory sizes a function's figures are projected to (the last is one full vCPU).
pub const MEMORY_CANDIDATES_MB: [u32; 5] = [128, 256, 512, 1024, 1769];
/// Lambda gives one full vCPU at 1,769 MB and a proportional share below.
pub const FULL_VCPU_MB: f64 = 1769.0;

/// One function measured in the bench (a full core here), and projected to Lambda's sizes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FunctionFigures {
    pub invocations_per_case: f64,
    /// On-CPU time per invocation here, and its wall time (the rest is waiting on I/O).
    pub cpu_ms: f64,
    pub wall_ms: f64,
    /// What the template gives it, and what its CPU per invocation becomes there.
    pub memory_mb: f64,
    pub cpu_ms_at_memory: f64,
    /// Per candidate size: duration per invocation and USD per million invocations (compute
    /// and request), as AWS Lambda Power Tuning weighs them.
    pub candidates: Vec<MemoryCandidate>,
    /// The size with the least cost × duration.
    pub best_memory_mb: u32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MemoryCandidate {
    pub memory_mb: u32,
    pub duration_ms: f64,
    pub usd_per_million: f64,
}

/// A function's figures from `invocations` invocations that took `cpu` on-CPU and `wall` in
/// all, over `cases` cases: the waiting part stays, the CPU part stretches by the share of a
/// vCPU each size gets.
pub fn function_figures(function: &str, invocations: u64, cpu: Duration, wall: Duration, cases: usize) -> FunctionFigures {
    let n = invocations.max(1) as f64;
    let cpu_ms = cpu.as_secs_f64() * 1000.0 / n;
    let wall_ms = wall.as_secs_f64() * 1000.0 / n;
    let wait_ms = (wall_ms - cpu_ms).max(0.0);
    let stretch = |mb: f64| (FULL_VCPU_MB / mb).max(1.0);
    let candidates: Vec<MemoryCandidate> = MEMORY_CANDIDATES_MB
        .iter()
        .map(|&mb| {
            // Billed by the millisecond, at least one.
            let duration_ms = (wait_ms + cpu_ms * stretch(f64::from(mb))).ceil().max(1.0);
            let usd = duration_ms / 1000.0 * f64::from(mb) / 1024.0 * LAMBDA_ARM64_USD_PER_GB_S + LAMBDA_USD_PER_REQUEST;
            MemoryCandidate { memory_mb: mb, duration_ms, usd_per_million: usd * 1e6 }
        })
        .collect();
    let best = candidates
        .iter()
        .min_by(|a, b| (a.usd_per_million * a.duration_ms).total_cmp(&(b.usd_per_million * b.duration_ms)))
        .map_or(128, |c| c.memory_mb);
    let memory_mb = memory_mb(function);
    FunctionFigures {
        invocations_per_case: invocations as f64 / cases.max(1) as f64,
        cpu_ms,
        wall_ms,
        memory_mb,
        cpu_ms_at_memory: cpu_ms * stretch(memory_mb),
        candidates,
        best_memory_mb: best,
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CostTable {
    pub prices_as_of: &'static str,
    /// Per case, by function (`intake`, `collect`, `enrich-<source>`, `synthesize`, `writeback`).
    pub lambda_gb_s_by_function: BTreeMap<String, f64>,
    pub lambda_invocations: f64,
    /// A lower bound: one unit per read (4 KB) and per write (1 KB), two per transaction item.
    pub dynamodb_rru: f64,
    pub dynamodb_wru: f64,
    pub sqs_requests: f64,
    pub model_input_tokens: f64,
    pub model_output_tokens: f64,
    /// USD per 1,000 cases, by item, with and without the model.
    pub per_1000_cases_usd: BTreeMap<String, f64>,
    /// The same 1,000 cases as one Python Lambda (512 MB) calling XDR, each source in turn, the
    /// model and XDR again: billed for the whole sequential wait.
    pub python_baseline_per_1000_cases_usd: BTreeMap<String, f64>,
    pub python_baseline_gb_s_per_case: f64,
}

pub struct Counted<'a> {
    pub cases: usize,
    /// Queue → (invocations, summed wall time).
    pub billed: &'a HashMap<String, (u64, Duration)>,
    /// Queue → summed on-CPU time (a full core here).
    pub cpu: &'a HashMap<String, Duration>,
    /// The webhook door's summed wall time and on-CPU time.
    pub intake: Duration,
    pub intake_cpu: Duration,
    pub aws_calls_by_operation: &'a BTreeMap<String, u64>,
    pub aws_units: &'a BTreeMap<String, u64>,
    pub model_tokens: (u64, u64),
    /// The sources one after another, as the usual function would wait for them (ms).
    pub sequential_ms: f64,
}

pub fn cost(c: &Counted) -> CostTable {
    let cases = c.cases.max(1) as f64;
    let mut gb_s: BTreeMap<String, f64> = BTreeMap::new();
    let mut invocations = cases; // the webhook, one per case
                                 // Billed: the wall time here with its CPU part stretched to the function's share of a vCPU.
    let billed_s = |function: &str, wall: Duration, cpu: Duration| {
        wall.as_secs_f64() + cpu.as_secs_f64() * ((FULL_VCPU_MB / memory_mb(function)).max(1.0) - 1.0)
    };
    gb_s.insert("intake".into(), billed_s("intake", c.intake, c.intake_cpu) * memory_mb("intake") / 1024.0 / cases);
    for (queue, (n, took)) in c.billed {
        invocations += *n as f64;
        let cpu = c.cpu.get(queue).copied().unwrap_or_default();
        *gb_s.entry(queue.clone()).or_default() += billed_s(queue, *took, cpu) * memory_mb(queue) / 1024.0 / cases;
    }
    let invocations = invocations / cases;
    let op = |name: &str| c.aws_calls_by_operation.get(name).copied().unwrap_or(0) as f64 / cases;
    let units = |name: &str| c.aws_units.get(name).copied().unwrap_or(0) as f64 / cases;
    // Batches are billed per item: a BatchGetItem of 5 keys is 5 reads.
    let rru = op("dynamodb:GetItem") + op("dynamodb:Query") + units("dynamodb:BatchGetItem (items)");
    let wru = op("dynamodb:PutItem")
        + op("dynamodb:UpdateItem")
        + 2.0 * units("dynamodb:TransactWriteItems (items)")
        + units("dynamodb:BatchWriteItem (items)");
    let sqs: f64 = c.aws_calls_by_operation.iter().filter(|(k, _)| k.starts_with("sqs:")).map(|(_, n)| *n as f64).sum::<f64>() / cases;
    let (tokens_in, tokens_out) = (c.model_tokens.0 as f64 / cases, c.model_tokens.1 as f64 / cases);
    let thousand = 1000.0;
    let lambda = (gb_s.values().sum::<f64>() * LAMBDA_ARM64_USD_PER_GB_S + invocations * LAMBDA_USD_PER_REQUEST) * thousand;
    let dynamodb = (rru * DYNAMODB_USD_PER_RRU + wru * DYNAMODB_USD_PER_WRU) * thousand;
    let sqs_usd = sqs * SQS_USD_PER_REQUEST * thousand;
    let api = HTTP_API_USD_PER_REQUEST * thousand;
    let model = (tokens_in * MODEL_USD_PER_M_INPUT + tokens_out * MODEL_USD_PER_M_OUTPUT) / 1e6 * thousand;
    let without = lambda + dynamodb + sqs_usd + api;
    let per_1000 = BTreeMap::from([
        ("lambda".to_string(), lambda),
        ("dynamodb".to_string(), dynamodb),
        ("sqs".to_string(), sqs_usd),
        ("api_gateway".to_string(), api),
        ("model".to_string(), model),
        ("total_without_model".to_string(), without),
        ("total_with_model".to_string(), without + model),
    ]);
    let python_gb_s = c.sequential_ms / 1000.0 * PYTHON_BASELINE_MB / 1024.0;
    let python_lambda = (python_gb_s * LAMBDA_ARM64_USD_PER_GB_S + LAMBDA_USD_PER_REQUEST) * thousand;
    let python_without = python_lambda + api;
    let baseline = BTreeMap::from([
        ("lambda".to_string(), python_lambda),
        ("api_gateway".to_string(), api),
        ("model".to_string(), model),
        ("total_without_model".to_string(), python_without),
        ("total_with_model".to_string(), python_without + model),
    ]);
    CostTable {
        prices_as_of: PRICES_AS_OF,
        lambda_gb_s_by_function: gb_s,
        lambda_invocations: invocations,
        dynamodb_rru: rru,
        dynamodb_wru: wru,
        sqs_requests: sqs,
        model_input_tokens: tokens_in,
        model_output_tokens: tokens_out,
        per_1000_cases_usd: per_1000,
        python_baseline_per_1000_cases_usd: baseline,
        python_baseline_gb_s_per_case: python_gb_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_is_priced_item_by_item_and_the_baseline_pays_for_waiting() {
        let billed = HashMap::from([
            ("collect".to_string(), (1, Duration::from_millis(300))),
            ("enrich-vt".to_string(), (1, Duration::from_millis(400))),
            ("synthesize".to_string(), (1, Duration::from_millis(2000))),
        ]);
        let ops =
            BTreeMap::from([("dynamodb:GetItem".to_string(), 10), ("dynamodb:PutItem".to_string(), 4), ("sqs:SendMessage".to_string(), 5)]);
        let units = BTreeMap::from([("dynamodb:TransactWriteItems (items)".to_string(), 3)]);
        let t = cost(&Counted {
            cases: 1,
            billed: &billed,
            cpu: &HashMap::from([("synthesize".to_string(), Duration::from_millis(10))]),
            intake: Duration::from_millis(100),
            intake_cpu: Duration::ZERO,
            aws_calls_by_operation: &ops,
            aws_units: &units,
            model_tokens: (4000, 1200),
            sequential_ms: 6000.0,
        });
        // 2 s at 128 MB, its 10 ms of CPU taking 1,769 / 128 times as long there.
        let expected = (2.0 + 0.010 * (FULL_VCPU_MB / 128.0 - 1.0)) * 128.0 / 1024.0;
        assert!((t.lambda_gb_s_by_function["synthesize"] - expected).abs() < 1e-9, "{}", t.lambda_gb_s_by_function["synthesize"]);
        assert_eq!((t.dynamodb_rru, t.dynamodb_wru, t.sqs_requests, t.lambda_invocations), (10.0, 10.0, 5.0, 4.0));
        let model = t.per_1000_cases_usd["model"];
        assert!((model - (4000.0 * 0.8 + 1200.0 * 4.0) / 1e3).abs() < 1e-9, "{model}");
        assert!((t.python_baseline_gb_s_per_case - 3.0).abs() < 1e-9, "6 s at 512 MB");
        assert!(t.python_baseline_per_1000_cases_usd["lambda"] > t.per_1000_cases_usd["lambda"]);
    }
}
