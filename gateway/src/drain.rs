//! The one drain signal. At shutdown the gateway drains: readiness turns false, listeners stop
//! accepting, connections finish their requests, WebSocket clients are told to reconnect
//! elsewhere, and background tasks stop. Every one of them watches the same [`Drain`], made by
//! the app's [`DrainTrigger`].

use tokio::sync::watch;

/// Starts the drain for every [`Drain`] made from it. Dropping it starts the drain too.
#[derive(Debug)]
pub struct DrainTrigger(watch::Sender<bool>);

/// Watches the drain: cheap to clone, one for each connection and background task.
#[derive(Debug, Clone)]
pub struct Drain(watch::Receiver<bool>);

impl DrainTrigger {
    /// A trigger whose drain has not started.
    pub fn new() -> Self {
        Self(watch::Sender::new(false))
    }

    /// A watcher of this trigger's drain.
    pub fn watcher(&self) -> Drain {
        Drain(self.0.subscribe())
    }

    /// Starts the drain (again is harmless).
    pub fn start(&self) {
        self.0.send_replace(true);
    }
}

impl Default for DrainTrigger {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// Resolves once the drain has started, at once if it already has (or if its trigger is
    /// gone). Cancel-safe, so it can sit in a `select!` loop.
    pub async fn started(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether the drain has started.
    pub fn has_started(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_watcher_sees_the_drain_start_once_and_for_all() {
        let trigger = DrainTrigger::new();
        let (mut early, late) = (trigger.watcher(), trigger.watcher());
        assert!(!early.has_started());
        let waiting = tokio::spawn(async move {
            early.started().await;
            // Asking again after the start answers at once.
            early.started().await;
        });
        trigger.start();
        waiting.await.expect("the watcher saw the drain");
        assert!(late.has_started());
        let mut after = trigger.watcher();
        after.started().await;
    }

    #[tokio::test]
    async fn a_dropped_trigger_drains() {
        let trigger = DrainTrigger::new();
        let mut watcher = trigger.watcher();
        drop(trigger);
        watcher.started().await;
    }
}
