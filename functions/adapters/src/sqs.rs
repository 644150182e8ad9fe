//! `Queue` and `QueueConsumer` on SQS. Logical queue names map to URLs given at construction
//! (from `QUEUE_URL_<NAME>` environment variables in a deployed function).

use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use aws_sdk_sqs::Client;
use std::collections::HashMap;
use std::time::Duration;

use dossier_core::ports::{Delivery, Queue, QueueConsumer, QueueError, QueueName, MAX_QUEUE_DELAY};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    urls: HashMap<QueueName, String>,
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(what: &str, e: SdkError<E>) -> QueueError {
    let code = e.code().unwrap_or("").to_string();
    let detail = format!("{what}: {code} {}", e.message().unwrap_or("")).trim().to_string();
    match (&e, code.as_str()) {
        (SdkError::ServiceError(_), c)
            if c.contains("NonExistentQueue")
                || c.contains("InvalidParameterValue")
                || c.contains("InvalidMessageContents")
                || c.contains("TooLong") =>
        {
            QueueError::Rejected(detail)
        }
        (SdkError::ConstructionFailure(_), _) => QueueError::Rejected(detail),
        _ => QueueError::Unavailable(if code.is_empty() { format!("{what}: {e:?}").chars().take(300).collect() } else { detail }),
    }
}

impl SqsQueue {
    pub fn new(client: Client, urls: HashMap<QueueName, String>) -> SqsQueue {
        SqsQueue { client, urls }
    }

    fn url(&self, queue: &QueueName) -> Result<&str, QueueError> {
        self.urls.get(queue).map(String::as_str).ok_or_else(|| QueueError::UnknownQueue(queue.to_string()))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.min(MAX_QUEUE_DELAY).as_secs()).unwrap_or(900)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: &QueueName, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(self.url(queue)?)
            .message_body(body)
            .delay_seconds(secs(delay))
            .send()
            .await
            .map_err(|e| classify("SendMessage", e))?;
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for SqsQueue {
    async fn receive(&self, queue: &QueueName, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        // SQS waits in whole seconds, at most 20; a sub-second wait rounds up to one.
        let wait_s = i32::try_from(wait.as_millis().div_ceil(1000).min(20)).unwrap_or(20);
        let out = self
            .client
            .receive_message()
            .queue_url(self.url(queue)?)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(wait_s)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                Some(Delivery {
                    queue: queue.clone(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body()?.to_string(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(self.url(&delivery.queue)?)
            .receipt_handle(&delivery.receipt)
            .send()
            .await
            .map_err(|e| classify("DeleteMessage", e))?;
        Ok(())
    }

    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.url(&delivery.queue)?)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(secs(delay))
            .send()
            .await
            .map_err(|e| classify("ChangeMessageVisibility", e))?;
        Ok(())
    }
}
