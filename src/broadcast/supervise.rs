//! Supervision of a worker: a panic inside it ends its future with the panic's message
//! instead of ending its task silently, so that the manager can end the job as ABORT_ERROR and
//! free its slot.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// A worker panicked: the panic's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the worker panicked: {0}")]
pub struct Panicked(pub String);

/// Runs `work` to its end: its value, or [`Panicked`] with the message of the panic that ended
/// it. Nothing of `work` is used after a panic (it is dropped), so its state cannot be seen
/// half-changed.
pub async fn supervised<F: Future>(work: F) -> Result<F::Output, Panicked> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|payload| Panicked(panic_message(payload.as_ref())))
}

/// The message a panic was raised with: `panic!`'s text, or a placeholder for another payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_future_that_ends_gives_its_value() {
        assert_eq!(supervised(async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn a_panic_gives_its_message() {
        let job = 3;
        let formatted = supervised(async move {
            tokio::task::yield_now().await;
            panic!("index {job} out of range")
        });
        assert_eq!(
            formatted.await,
            Err::<(), _>(Panicked("index 3 out of range".into()))
        );
        let literal = supervised(async { panic!("boom") });
        let panicked = literal.await.unwrap_err();
        assert_eq!(panicked.to_string(), "the worker panicked: boom");
        let payload = supervised(async { std::panic::panic_any(42_u8) });
        assert_eq!(
            payload.await,
            Err::<(), _>(Panicked("a panic without a message".into()))
        );
    }
}
