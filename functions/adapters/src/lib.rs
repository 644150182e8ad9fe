//! Adapters: the core's ports implemented with the AWS SDK (DynamoDB, SQS, Secrets Manager) and
//! HTTP clients (Cortex XDR, VirusTotal), plus the Lambda event glue and the wiring each
//! function's `main.rs` calls once per cold start.

pub mod aws;
pub mod dynamo;
pub mod env;
pub mod export;
pub mod http_client;
pub mod identity;
pub mod knowledge;
pub mod lambda;
pub mod llm;
pub mod notify;
pub mod oidc;
pub mod provision;
pub mod secrets;
pub mod sources;
pub mod sqs;
pub mod telemetry;
pub mod tls;
pub mod wiring;
pub mod xdr;
