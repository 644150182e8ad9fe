//! Creates the tables and queues the template defines, for moto server and local runs (the
//! deployed stack gets them from `template.yaml`).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::HashMap;

use dossier_core::ports::{QueueName, Table};

use crate::dynamo::{TableNames, DUE_INDEX};

/// Max receives before SQS moves a message to its DLQ (as in the template).
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// Creates every table of `names` that is missing, as the template defines them.
pub async fn ensure_tables(client: &aws_sdk_dynamodb::Client, names: &TableNames) -> Result<(), String> {
    for table in Table::ALL {
        ensure_table(client, names.name(table), table.has_due_index()).await?;
    }
    Ok(())
}

async fn ensure_table(client: &aws_sdk_dynamodb::Client, name: &str, due_index: bool) -> Result<(), String> {
    let exists = client.describe_table().table_name(name).send().await.is_ok();
    if exists {
        return Ok(());
    }
    let key = |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build().map_err(|e| e.to_string());
    let attr = |n: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(t).build().map_err(|e| e.to_string())
    };
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?);
    if due_index {
        let index = GlobalSecondaryIndex::builder()
            .index_name(DUE_INDEX)
            .key_schema(key("due_shard", KeyType::Hash)?)
            .key_schema(key("due_at", KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
            .build()
            .map_err(|e| e.to_string())?;
        create = create
            .attribute_definitions(attr("due_shard", ScalarAttributeType::S)?)
            .attribute_definitions(attr("due_at", ScalarAttributeType::N)?)
            .global_secondary_indexes(index);
    }
    create.send().await.map_err(|e| format!("CreateTable {name}: {e:?}").chars().take(400).collect::<String>())?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name("expires_at").enabled(true).build().map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| format!("UpdateTimeToLive {name}: {e:?}").chars().take(400).collect::<String>())?;
    Ok(())
}

/// Creates `<prefix><queue>` and `<prefix><queue>-dlq` with a redrive policy; returns the URLs.
pub async fn ensure_queues(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    queues: &[QueueName],
    visibility_s: u32,
) -> Result<HashMap<QueueName, String>, String> {
    let mut urls = HashMap::new();
    for q in queues {
        let dlq_name = format!("{prefix}{}-dlq", q.as_str());
        let dlq = client.create_queue().queue_name(&dlq_name).send().await.map_err(|e| format!("CreateQueue {dlq_name}: {e:?}"))?;
        let dlq_url = dlq.queue_url().ok_or("CreateQueue returned no URL")?.to_string();
        let attrs = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("GetQueueAttributes {dlq_name}: {e:?}"))?;
        let dlq_arn = attrs.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).ok_or("no DLQ ARN")?.clone();
        let name = format!("{prefix}{}", q.as_str());
        let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}).to_string();
        let created = client
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_s.to_string())
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .map_err(|e| format!("CreateQueue {name}: {e:?}"))?;
        urls.insert(q.clone(), created.queue_url().ok_or("CreateQueue returned no URL")?.to_string());
    }
    Ok(urls)
}

/// URL of a queue's DLQ, by the naming rule above.
pub async fn dlq_url(client: &aws_sdk_sqs::Client, prefix: &str, queue: &QueueName) -> Result<String, String> {
    let out = client
        .get_queue_url()
        .queue_name(format!("{prefix}{}-dlq", queue.as_str()))
        .send()
        .await
        .map_err(|e| format!("GetQueueUrl: {e:?}"))?;
    out.queue_url().map(str::to_string).ok_or_else(|| "no URL".into())
}

/// Creates the secret `name` holding `value`, or overwrites its value if it exists.
pub async fn ensure_secret(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> Result<(), String> {
    if client.describe_secret().secret_id(name).send().await.is_ok() {
        client.put_secret_value().secret_id(name).secret_string(value).send().await.map_err(|e| format!("PutSecretValue {name}: {e}"))?;
        return Ok(());
    }
    client.create_secret().name(name).secret_string(value).send().await.map_err(|e| format!("CreateSecret {name}: {e}"))?;
    Ok(())
}
