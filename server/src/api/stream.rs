//! [`ResponseStream`]: the boxed server-side stream every streaming RPC
//! returns, fed through a bounded channel by a task that owns the RPC's
//! state (so a slow client applies backpressure rather than growing a queue).

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::Status;

/// A server-streaming RPC's responses.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream of everything sent on `receiver`, ending when every sender is gone.
pub fn channel_stream<T: Send + 'static>(
    receiver: mpsc::Receiver<Result<T, Status>>,
) -> ResponseStream<T> {
    Box::pin(futures::stream::unfold(
        receiver,
        |mut receiver| async move {
            let item = receiver.recv().await?;
            Some((item, receiver))
        },
    ))
}
