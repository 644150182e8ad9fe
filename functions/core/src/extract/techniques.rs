//! ATT&CK techniques inferred from what alerts say when XDR's own `mitre_*` fields are empty
//! (most real payloads). Each rule is one line of this table: what it looks at, the pattern
//! (case-insensitive, linear-time regex), the techniques it implies. An inferred technique
//! carries the rule that fired and the evidence, so an analyst can judge it.

use regex::RegexSet;
use std::sync::OnceLock;

use crate::domain::InferredTechnique;
use crate::text::prefix;
use crate::xdr::Alert;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Looks {
    /// Process command lines of the alert.
    CommandLine,
    /// The alert's name.
    AlertName,
    /// The alert's category.
    Category,
}

pub struct Rule {
    pub id: &'static str,
    pub about: &'static str,
    pub looks: Looks,
    pub pattern: &'static str,
    pub techniques: &'static [&'static str],
}

/// The rule table. Keep it readable: it is documentation as much as code.
pub const RULES: &[Rule] = &[
    Rule {
        id: "R01",
        about: "encoded PowerShell",
        looks: Looks::CommandLine,
        pattern: r"powershell(\.exe)?\b.*\s-(e|ec|en|enc|enco|encod|encode|encoded|encodedcommand)\s",
        techniques: &["T1059.001", "T1027"],
    },
    Rule {
        id: "R02",
        about: "PowerShell download cradle",
        looks: Looks::CommandLine,
        pattern: r"(invoke-webrequest|\biwr\b|downloadstring|downloadfile|net\.webclient|start-bitstransfer)",
        techniques: &["T1059.001", "T1105"],
    },
    Rule {
        id: "R03",
        about: "shadow copies deleted",
        looks: Looks::CommandLine,
        pattern: r"(vssadmin(\.exe)?\s+delete\s+shadows|wmic(\.exe)?\s+shadowcopy\s+delete|wbadmin(\.exe)?\s+delete\s+(catalog|systemstatebackup))",
        techniques: &["T1490"],
    },
    Rule {
        id: "R04",
        about: "boot recovery disabled",
        looks: Looks::CommandLine,
        pattern: r"bcdedit(\.exe)?.*(recoveryenabled\s+no|bootstatuspolicy\s+ignoreallfailures)",
        techniques: &["T1490"],
    },
    Rule {
        id: "R05",
        about: "LSASS memory dumped",
        looks: Looks::CommandLine,
        pattern: r"(procdump(64)?(\.exe)?.*lsass|comsvcs(\.dll)?.*minidump|sekurlsa::|mimikatz)",
        techniques: &["T1003.001"],
    },
    Rule {
        id: "R06",
        about: "certutil used to download or decode",
        looks: Looks::CommandLine,
        pattern: r"certutil(\.exe)?.*(-urlcache|-decode)",
        techniques: &["T1105", "T1140"],
    },
    Rule {
        id: "R07",
        about: "scheduled task created",
        looks: Looks::CommandLine,
        pattern: r"schtasks(\.exe)?\s+/create",
        techniques: &["T1053.005"],
    },
    Rule {
        id: "R08",
        about: "Run key written",
        looks: Looks::CommandLine,
        pattern: r"reg(\.exe)?\s+add\s+.*\\currentversion\\run",
        techniques: &["T1547.001"],
    },
    Rule {
        id: "R09",
        about: "regsvr32 script proxy (Squiblydoo)",
        looks: Looks::CommandLine,
        pattern: r"regsvr32(\.exe)?.*(/i:https?|scrobj)",
        techniques: &["T1218.010"],
    },
    Rule {
        id: "R10",
        about: "mshta runs remote or inline script",
        looks: Looks::CommandLine,
        pattern: r"mshta(\.exe)?\s+(https?:|javascript:|vbscript:)",
        techniques: &["T1218.005"],
    },
    Rule {
        id: "R11",
        about: "remote service execution (PsExec-style)",
        looks: Looks::CommandLine,
        pattern: r"\b(psexec(64)?|paexec)(\.exe)?\b",
        techniques: &["T1569.002", "T1021.002"],
    },
    Rule { id: "R12", about: "remote WMI execution", looks: Looks::CommandLine, pattern: r"wmic(\.exe)?\s+/node:", techniques: &["T1047"] },
    Rule {
        id: "R13",
        about: "account discovery with net",
        looks: Looks::CommandLine,
        pattern: r"\bnet1?(\.exe)?\s+(user|group|localgroup)\b",
        techniques: &["T1087"],
    },
    Rule {
        id: "R14",
        about: "event logs cleared",
        looks: Looks::CommandLine,
        pattern: r"(wevtutil(\.exe)?\s+cl\b|clear-eventlog)",
        techniques: &["T1070.001"],
    },
    Rule {
        id: "R15",
        about: "Defender disabled",
        looks: Looks::CommandLine,
        pattern: r"set-mppreference.*-disable",
        techniques: &["T1562.001"],
    },
    Rule {
        id: "R16",
        about: "Office macro document opened",
        looks: Looks::CommandLine,
        pattern: r"(winword|excel|powerpnt)(\.exe)?.*\.(docm|xlsm|pptm|doc|xls)\b",
        techniques: &["T1204.002", "T1566.001"],
    },
    Rule {
        id: "R20",
        about: "alert: kernel privilege escalation",
        looks: Looks::AlertName,
        pattern: r"privilege escalation",
        techniques: &["T1068"],
    },
    Rule {
        id: "R21",
        about: "alert: credential dumping",
        looks: Looks::AlertName,
        pattern: r"(credential (dump|theft)|lsass)",
        techniques: &["T1003"],
    },
    Rule { id: "R22", about: "alert: ransomware", looks: Looks::AlertName, pattern: r"ransomware", techniques: &["T1486"] },
    Rule {
        id: "R23",
        about: "alert: brute force",
        looks: Looks::AlertName,
        pattern: r"(brute.?force|password spray|failed log(on|in)s?)",
        techniques: &["T1110"],
    },
    Rule { id: "R24", about: "alert: port scan", looks: Looks::AlertName, pattern: r"port ?scan", techniques: &["T1046"] },
    Rule { id: "R25", about: "alert: large upload", looks: Looks::AlertName, pattern: r"large upload", techniques: &["T1048"] },
    Rule {
        id: "R26",
        about: "alert: malware executed",
        looks: Looks::AlertName,
        pattern: r"(wildfire malware|local analysis malware|behavioral threat)",
        techniques: &["T1204.002"],
    },
    Rule {
        id: "R27",
        about: "alert: phishing link in e-mail",
        looks: Looks::AlertName,
        pattern: r"phishing (url|link)",
        techniques: &["T1566.002"],
    },
    Rule {
        id: "R28",
        about: "alert: phishing attachment",
        looks: Looks::AlertName,
        pattern: r"phishing attachment",
        techniques: &["T1566.001"],
    },
    Rule { id: "R30", about: "category: ransomware", looks: Looks::Category, pattern: r"ransomware", techniques: &["T1486"] },
    Rule { id: "R31", about: "category: exploit", looks: Looks::Category, pattern: r"^exploit", techniques: &["T1203"] },
];

const COMMAND_LINE_FIELDS: &[&str] = &[
    "actor_process_command_line",
    "causality_actor_process_command_line",
    "action_process_image_command_line",
    "os_actor_process_command_line",
];
/// Command lines longer than this are cut before matching (as in extraction).
const MAX_CMD: usize = 16 * 1024;

struct Compiled {
    command_line: (RegexSet, Vec<usize>),
    alert_name: (RegexSet, Vec<usize>),
    category: (RegexSet, Vec<usize>),
}

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| {
        let set = |looks: Looks| {
            let idx: Vec<usize> = RULES.iter().enumerate().filter(|(_, r)| r.looks == looks).map(|(i, _)| i).collect();
            let patterns: Vec<String> = idx.iter().map(|i| format!("(?i){}", RULES[*i].pattern)).collect();
            (RegexSet::new(patterns).expect("rule patterns compile"), idx)
        };
        Compiled { command_line: set(Looks::CommandLine), alert_name: set(Looks::AlertName), category: set(Looks::Category) }
    })
}

/// Techniques the rules infer from these alerts, minus those already cited, one entry per technique.
pub fn infer(alerts: &[Alert], already_cited: &[String]) -> Vec<InferredTechnique> {
    let c = compiled();
    let mut out: Vec<InferredTechnique> = Vec::new();
    let mut push = |rule: &Rule, evidence: String| {
        for t in rule.techniques {
            if already_cited.iter().any(|c| c == t) || out.iter().any(|o| o.id == *t) {
                continue;
            }
            out.push(InferredTechnique {
                id: (*t).to_string(),
                rule: rule.id.into(),
                about: rule.about.into(),
                evidence: evidence.clone(),
            });
        }
    };
    for alert in alerts {
        for (field, value) in &alert.fields {
            if !COMMAND_LINE_FIELDS.contains(&field.as_str()) {
                continue;
            }
            let text = crate::domain::refang(prefix(value, MAX_CMD));
            for m in c.command_line.0.matches(&text).iter() {
                let rule = &RULES[c.command_line.1[m]];
                push(rule, format!("{field}: {}", crate::text::clean_text(&text, 120)));
            }
        }
        for (set, value, label) in
            [(&c.alert_name, alert.name.as_deref(), "alert name"), (&c.category, alert.category.as_deref(), "category")]
        {
            let Some(v) = value else { continue };
            for m in set.0.matches(prefix(v, 512)).iter() {
                push(&RULES[set.1[m]], format!("{label}: {}", crate::text::clean_text(v, 120)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, category: &str, cmd: &str) -> Alert {
        Alert {
            name: Some(name.into()),
            category: Some(category.into()),
            fields: vec![("actor_process_command_line".into(), cmd.into())],
            ..Alert::default()
        }
    }

    #[test]
    fn every_rule_names_real_active_techniques() {
        let a = crate::domain::attack();
        for r in RULES {
            for t in r.techniques {
                assert!(a.technique(t).is_some(), "{} cites {t}, not an active ATT&CK v18.1 technique", r.id);
            }
        }
        let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        let mut dedup = ids.clone();
        dedup.dedup();
        assert_eq!(ids, dedup, "rule ids are unique");
    }

    #[test]
    fn infers_from_command_lines_names_and_categories() {
        let alerts = vec![
            alert("Suspicious Process", "Execution", "powershell.exe -nop -w hidden -enc SQBFAFgA"),
            alert("Possible Ransomware", "Ransomware", "cmd /c vssadmin.exe Delete Shadows /all /quiet"),
            alert("x", "Exploit", "procdump64.exe -ma lsass.exe out.dmp"),
        ];
        let got = infer(&alerts, &["T1027".into()]);
        let ids: Vec<&str> = got.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["T1059.001", "T1490", "T1486", "T1003.001", "T1203"]);
        assert_eq!(got[0].rule, "R01");
        assert!(got[0].evidence.starts_with("actor_process_command_line: powershell.exe -nop"));
        assert!(infer(&[alert("Benign", "Other", "notepad.exe readme.txt")], &[]).is_empty());
    }
}
