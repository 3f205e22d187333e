//! Download turns in layer order. A pull downloads its layers in parallel, up to the limit
//! the puller shares among all pulls, and unpacks them one after another from the first. Each
//! layer's task would queue for a download permit in whatever order its own first steps (a
//! content lookup) happen to end, so the first layers could wait behind later ones while the
//! unpack, which needs them first, waits too. Instead one dispatcher per pull takes the
//! permits in layer order and hands each to its layer: a layer that needs no download (its
//! blob is there already, or another pull is downloading it) drops its turn, and the permit
//! goes back at once.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;

/// A layer's turn: the permit its first download attempt holds. A resumed attempt queues for
/// a permit of its own.
pub(super) type Turn = oneshot::Receiver<OwnedSemaphorePermit>;

/// The dispatcher of one pull's turns; ended when the pull is.
pub(super) struct Turns {
    dispatcher: JoinHandle<()>,
}

impl Drop for Turns {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

/// Turns for `layers` layers, in order, from `permits`.
pub(super) fn in_order(permits: Arc<Semaphore>, layers: usize) -> (Turns, Vec<Turn>) {
    let (senders, turns): (Vec<_>, Vec<_>) = (0..layers).map(|_| oneshot::channel()).unzip();
    let dispatcher = tokio::spawn(async move {
        for mut sender in senders {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // Closed: the puller is going away.
                    Err(_) => return,
                },
                // The layer needs no download: its permit goes to the next one.
                () = sender.closed() => continue,
            };
            // A layer that dropped its turn meanwhile gives the permit back here.
            let _ = sender.send(permit);
        }
    });
    (Turns { dispatcher }, turns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_go_to_the_layers_in_order_and_skip_those_that_need_none() {
        let permits = Arc::new(Semaphore::new(1));
        let (_turns, mut turns) = in_order(Arc::clone(&permits), 3);
        let third = turns.pop().unwrap();
        let second = turns.pop().unwrap();
        let first = turns.pop().unwrap();
        // The second layer needs no download.
        drop(second);
        // A permit taken elsewhere first: the first layer's turn waits for it.
        let held = Arc::clone(&permits).acquire_owned().await.unwrap();
        let first = tokio::spawn(first);
        tokio::task::yield_now().await;
        assert!(!first.is_finished());
        drop(held);
        let permit = first.await.unwrap().unwrap();
        assert_eq!(permits.available_permits(), 0);
        drop(permit);
        // The third layer gets the next permit; the second's was never taken.
        let permit = third.await.unwrap();
        assert_eq!(permits.available_permits(), 0);
        drop(permit);
        assert_eq!(permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_pull_that_ends_stops_its_dispatcher() {
        let permits = Arc::new(Semaphore::new(0));
        let (turns, layers) = in_order(Arc::clone(&permits), 2);
        drop(turns);
        // The dispatcher, aborted, no longer waits: nothing ever takes the permit added now.
        tokio::task::yield_now().await;
        permits.add_permits(1);
        tokio::task::yield_now().await;
        assert_eq!(permits.available_permits(), 1);
        drop(layers);
    }
}
