//! What happens to a message after a stage ran: the one rule for the Lambda glue and the local
//! runner alike, so local runs show what Lambda does.

use std::time::Duration;
use tracing::{error, info, warn};

use super::{MessageHandler, StageError};
use crate::messages::Message;
use crate::ports::{Queue, QueueName};

/// When the invocation handling a message is killed (the Lambda context's deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at_ms: i64,
}

impl Deadline {
    pub fn after(now_ms: i64, timeout: Duration) -> Deadline {
        Deadline { at_ms: now_ms.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 4)) }
    }

    pub fn remaining(&self, now_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(self.at_ms.saturating_sub(now_ms)).unwrap_or(0))
    }
}

/// What to do with the message just handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Done, or nothing to do: delete it.
    Ack,
    /// Waiting, not failing (a quota, a lease, a deadline not reached): a copy is sent with this
    /// delay and the original deleted, so waiting never counts toward the DLQ.
    Defer(Duration),
    /// Failed: it comes back after the visibility timeout and, after the redrive limit, rests
    /// in the DLQ intact.
    Fail { retryable: bool, reason: String },
}

/// A message deferred this often goes to the DLQ (at the queue's longest delay, 15 minutes, that
/// is more than two days of waiting).
pub const MAX_DEFERRALS: u32 = 200;

impl Disposition {
    pub fn of(result: &Result<(), StageError>) -> Disposition {
        match result {
            Ok(()) => Disposition::Ack,
            Err(StageError::RetryLater { after, .. }) => Disposition::Defer(*after),
            Err(e) => Disposition::Fail { retryable: e.is_retryable(), reason: e.to_string() },
        }
    }
}

/// Runs `body` through `handler` and carries out a deferral; returns `Ack` or `Fail` for the
/// runner to apply to the original message.
pub async fn dispose(
    handler: &dyn MessageHandler,
    queue: &dyn Queue,
    queue_name: &QueueName,
    body: &str,
    deadline: super::Deadline,
) -> Disposition {
    let result = handler.handle(body, deadline).await;
    match Disposition::of(&result) {
        Disposition::Defer(after) => match Message::deferred(body, MAX_DEFERRALS) {
            Ok(again) => match queue.send(queue_name, &again, after).await {
                Ok(()) => {
                    if let Err(e) = &result {
                        info!(queue = %queue_name, after_ms = after.as_millis() as u64, reason = %e, "message deferred");
                    }
                    Disposition::Ack
                }
                Err(e) => {
                    warn!(queue = %queue_name, error = %e, "could not defer the message; it comes back after the visibility timeout");
                    Disposition::Fail { retryable: true, reason: format!("deferral not sent: {e}") }
                }
            },
            Err(e) => {
                error!(queue = %queue_name, error = %e, "message cannot be deferred again");
                Disposition::Fail { retryable: false, reason: e.to_string() }
            }
        },
        Disposition::Fail { retryable, reason } => {
            if retryable {
                warn!(queue = %queue_name, error = %reason, "message failed; it will be retried");
            } else {
                error!(queue = %queue_name, error = %reason, "message cannot be processed");
            }
            Disposition::Fail { retryable, reason }
        }
        Disposition::Ack => Disposition::Ack,
    }
}
