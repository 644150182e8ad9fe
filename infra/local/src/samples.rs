//! Sample incidents and the sample intel feed compiled into the binary (see `samples/README.md`).

pub struct Sample {
    pub name: &'static str,
    pub about: &'static str,
    pub extra_data: &'static str,
}

pub const SAMPLES: &[Sample] = &[
    Sample {
        name: "demo_powershell_stager",
        about: "composed in the recorded shape: encoded PowerShell from a Word macro downloads a second stage",
        extra_data: include_str!("../samples/xdr/demo_powershell_stager.json"),
    },
    Sample {
        name: "get_incident_extra_data",
        about: "recorded (demisto/content test data): WildFire test file blocked on host AAAAAA",
        extra_data: include_str!("../samples/xdr/get_incident_extra_data.json"),
    },
];

pub const INTEL_FEED: &str = include_str!("../samples/intel-feed.csv");

pub const CMDB_EXPORT: &str = include_str!("../samples/cmdb-export.csv");
