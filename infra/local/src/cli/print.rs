//! How the commands print what they found.

use dossier_local::chaos::ChaosReport;

pub fn print_cold_start(report: &[dossier_local::coldstart::ColdStart], json: bool) {
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    println!(
        "{:<12} {:>9} {:>13} {:>20} {:>14} {:>12}",
        "function", "init ms", "init CPU ms", "CPU at template MB", "peak RSS MiB", "zip bytes"
    );
    for c in report {
        println!(
            "{:<12} {:>9.1} {:>13.1} {:>20.1} {:>14.1} {:>12}",
            c.function, c.init_ms, c.init_cpu_ms, c.init_cpu_ms_at_memory, c.peak_rss_mib, c.zip_bytes
        );
    }
}

pub fn print_bench(r: &dossier_local::bench::BenchReport) {
    println!("backend              {}", r.backend);
    println!("cases                {} ({} lost)", r.cases, r.lost);
    println!("webhook→comment p50  {:.1} ms", r.p50_ms);
    println!("webhook→comment p95  {:.1} ms", r.p95_ms);
    println!("critical path        {:.1} ms (XDR + source rounds of 4 lookups + model + write-back)", r.critical_path_ms);
    println!("overhead             {:.1} %", r.overhead_pct);
    println!("sequential would be  {:.1} ms ({:.1}x the p50)", r.sequential_ms, r.sequential_ratio);
    println!("CPU per case         {:.2} ms", r.cpu_ms_per_case);
    println!("peak RSS             {:.1} MiB", r.peak_rss_mib);
    println!("per function         invocations/case  CPU/invocation  wall/invocation  at template memory  best memory (cost × duration)");
    for (f, x) in &r.functions {
        println!(
            "  {f:<18} {:>10.2} {:>12.3} ms {:>13.1} ms {:>10.2} ms at {} MB {:>12} MB",
            x.invocations_per_case, x.cpu_ms, x.wall_ms, x.cpu_ms_at_memory, x.memory_mb, x.best_memory_mb
        );
    }
    let mut calls: Vec<_> = r.calls_per_indicator.iter().collect();
    calls.sort_by(|a, b| a.0.cmp(b.0));
    for (s, c) in calls {
        println!("calls per indicator  {s}: {c:.2} (all cases together: concurrent lookups of one indicator wait for the first, repeats come from the cache)");
    }
    if let Some(l) = &r.aws_latency_ms {
        let l: Vec<String> = l.iter().map(|(k, v)| format!("{k} {v} ms")).collect();
        println!("AWS latency          {}", l.join(", "));
    }
    match r.aws_sequential_calls_per_case {
        Some(seq) => println!("AWS calls per case   {:.1} ({seq:.1} one after another on the critical path)", r.aws_calls_per_case),
        None => println!("AWS calls per case   {:.1} (those in sequence are counted with --aws-latency)", r.aws_calls_per_case),
    }
    for (op, n) in &r.aws_calls_by_operation {
        println!("  {op:<48} {n:.1}");
    }
    let c = &r.cost;
    println!("cost per 1,000 cases (prices {}):", c.prices_as_of);
    for (item, usd) in &c.per_1000_cases_usd {
        let usual = c.python_baseline_per_1000_cases_usd.get(item).map_or(String::new(), |u| format!("   one Python Lambda: ${u:.4}"));
        println!("  {item:<22} ${usd:.4}{usual}");
    }
    println!(
        "  per case: {:.4} GB-s over {:.1} invocations, {:.1} RRU, {:.1} WRU, {:.1} SQS requests, {:.0}/{:.0} model tokens in/out",
        c.lambda_gb_s_by_function.values().sum::<f64>(),
        c.lambda_invocations,
        c.dynamodb_rru,
        c.dynamodb_wru,
        c.sqs_requests,
        c.model_input_tokens,
        c.model_output_tokens
    );
    println!("wall time            {:.0} ms", r.wall_ms);
}

pub fn print_text(r: &serde_json::Value) {
    let case = &r["case"];
    println!(
        "━━━ Incident {} (tenant {}) — {} ━━━",
        case["incident_id"].as_str().unwrap_or(""),
        case["tenant"].as_str().unwrap_or(""),
        case["status"].as_str().unwrap_or("")
    );
    if let Some(f) = case["failure"].as_str() {
        println!("FAILED: {f}");
    }
    println!("{}", r["dossier"]["comment"].as_str().unwrap_or("(no dossier)"));
    let actions = r["actions"].as_array().cloned().unwrap_or_default();
    if !actions.is_empty() {
        println!("\nApproval links (one per approver; GET shows a confirmation page, POST decides):");
        for a in actions {
            for link in a["approvals"].as_array().cloned().unwrap_or_default() {
                println!(
                    "  {} {} → {}",
                    a["kind"].as_str().unwrap_or(""),
                    a["target_label"].as_str().unwrap_or(""),
                    link["approver"].as_str().unwrap_or("")
                );
                println!("  approval: {}", link["url"].as_str().unwrap_or(""));
            }
        }
    }
    let writes = r["xdr_writes"].as_array().map_or(0, Vec::len);
    println!("\nXDR writes recorded (not sent): {writes}\n");
}

pub fn print_chaos(r: &ChaosReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    println!("cases                {} ({} terminal, {} stuck): {:?}", r.cases, r.terminal, r.stuck, r.by_status);
    println!("unexplained          {}", r.unexplained);
    println!("duplicate comments   {} (ambiguous posts: {})", r.duplicate_comments, r.ambiguous_posts);
    println!("duplicate executions {}", r.duplicate_executions);
    println!("unapproved changes   {}", r.unapproved_changes);
    println!("DLQ messages         {}", r.dlq);
    println!(
        "injected             {} worker deaths ({} invocations killed), {} duplicated messages",
        r.crashes, r.killed_invocations, r.duplicated_messages
    );
    println!(
        "approvers            {} approved, {} rejected; {} incidents resolved midway; {} changes made",
        r.approved, r.rejected, r.resolved, r.executed
    );
    println!("wall time            {:.1} s (seed {})", r.wall_ms as f64 / 1000.0, r.seed);
    println!("{}", if r.holds() { "every promise held" } else { "A PROMISE BROKE" });
}
