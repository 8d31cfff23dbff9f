//! The local side of subscriptions: which channels this bus has subscribers on (`Registry`),
//! each subscriber's bounded queue (`Mailbox`), and the guard that unregisters it.

use super::*;

/// The local subscribers, by channel, and the bus status. Subscriptions hold it to unregister.
pub(super) struct Registry {
    pub(super) state: Mutex<RegistryState>,
    /// Wakes the connection task when a channel gains its first or loses its last subscriber.
    pub(super) changed: Notify,
    pub(super) next_subscriber_id: AtomicU64,
    pub(super) status: watch::Sender<BusStatus>,
    pub(super) subscriber_queue_len_max: usize,
}

pub(super) struct RegistryState {
    /// Each channel's subscribers; the channel is opened with a flag that turns true once Redis
    /// has confirmed `SUBSCRIBE` for it on the current connection.
    pub(super) channels: ChannelMembers<String, watch::Sender<bool>, Arc<Mailbox>>,
    /// The connection task has ended: new subscriptions end at once.
    pub(super) closed: bool,
}

impl Registry {
    pub(super) fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks delivery broken and tells every subscription, under one lock so a subscription
    /// created concurrently is either told here or starts out interrupted.
    pub(super) fn interrupt_all(&self) {
        let state = self.lock();
        self.status.send_replace(BusStatus::Broken);
        for (_, channel) in state.channels.iter() {
            channel.opened.send_replace(false);
            for mailbox in channel.by_id.values() {
                mailbox.interrupt();
            }
        }
    }

    /// Marks delivery restored and tells every subscription.
    pub(super) fn restore_all(&self) {
        let state = self.lock();
        self.status.send_replace(BusStatus::Delivering);
        for (_, channel) in state.channels.iter() {
            for mailbox in channel.by_id.values() {
                mailbox.restore();
            }
        }
    }

    pub(super) fn close_all(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.status.send_replace(BusStatus::Broken);
        for channel in state.channels.take_all() {
            for mailbox in channel.by_id.into_values() {
                mailbox.close();
            }
        }
    }

    pub(super) fn register(self: &Arc<Self>, channel: &ChannelName) -> SubscriberGuard {
        let mailbox = Arc::new(Mailbox::new(self.subscriber_queue_len_max));
        let id = self.next_subscriber_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        if state.closed {
            mailbox.close();
        } else {
            if *self.status.borrow() == BusStatus::Broken {
                mailbox.interrupt();
            }
            let first =
                state
                    .channels
                    .join(channel.as_str().to_owned(), id, mailbox.clone(), || {
                        watch::channel(false).0
                    });
            if first {
                self.changed.notify_one();
            }
        }
        SubscriberGuard {
            registry: self.clone(),
            channel: channel.as_str().to_owned(),
            id,
            mailbox,
        }
    }

    /// The channels with local subscribers.
    pub(super) fn wanted(&self) -> BTreeSet<String> {
        self.lock().channels.channels().cloned().collect()
    }

    pub(super) fn mark_subscribed(&self, subscribed: &BTreeSet<String>) {
        let state = self.lock();
        for (name, channel) in state.channels.iter() {
            if subscribed.contains(name) {
                channel
                    .opened
                    .send_if_modified(|value| !std::mem::replace(value, true));
            }
        }
    }

    pub(super) fn deliver(&self, channel: &str, event: &Arc<Event>, received_at: Instant) {
        let state = self.lock();
        if let Some(channel) = state.channels.get(channel) {
            for mailbox in channel.by_id.values() {
                mailbox.push_event(event, received_at);
            }
        }
    }
}

/// Removes its subscriber when the subscription is dropped.
pub(super) struct SubscriberGuard {
    pub(super) registry: Arc<Registry>,
    pub(super) channel: String,
    pub(super) id: u64,
    pub(super) mailbox: Arc<Mailbox>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        if state
            .channels
            .leave(self.channel.as_str(), self.id)
            .is_some()
        {
            self.registry.changed.notify_one();
        }
    }
}

/// One subscription's bounded queue. Events beyond `event_len_max` are dropped and the
/// subscriber is told `Interrupted` then `Restored` (it catches up from history, which holds
/// every dropped event because it reads history only after taking `Restored`).
pub(super) struct Mailbox {
    pub(super) state: Mutex<MailboxState>,
    pub(super) ready: Notify,
    pub(super) event_len_max: usize,
}

pub(super) struct MailboxState {
    pub(super) queue: VecDeque<BusMessage>,
    pub(super) events_queued: usize,
    /// The last status message queued is `Interrupted` (delivery broken for this subscriber).
    pub(super) interrupted: bool,
    /// Events were dropped and `Interrupted, Restored` is queued; no event since.
    pub(super) lagged: bool,
    pub(super) closed: bool,
}

impl Mailbox {
    pub(super) fn new(event_len_max: usize) -> Self {
        Self {
            state: Mutex::new(MailboxState {
                queue: VecDeque::new(),
                events_queued: 0,
                interrupted: false,
                lagged: false,
                closed: false,
            }),
            ready: Notify::new(),
            event_len_max,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn push_event(&self, event: &Arc<Event>, received_at: Instant) {
        let mut state = self.lock();
        if state.events_queued < self.event_len_max {
            state.queue.push_back(BusMessage::Event {
                event: event.clone(),
                received_at,
            });
            state.events_queued += 1;
            state.lagged = false;
        } else if !state.lagged && !state.interrupted {
            state.queue.push_back(BusMessage::Interrupted);
            state.queue.push_back(BusMessage::Restored);
            state.lagged = true;
        } else {
            // Already told (and not yet caught up): the event is in history.
            return;
        }
        drop(state);
        self.ready.notify_one();
    }

    pub(super) fn interrupt(&self) {
        let mut state = self.lock();
        if state.interrupted {
            return;
        }
        state.interrupted = true;
        state.queue.push_back(BusMessage::Interrupted);
        drop(state);
        self.ready.notify_one();
    }

    pub(super) fn restore(&self) {
        let mut state = self.lock();
        if !state.interrupted {
            return;
        }
        state.interrupted = false;
        state.queue.push_back(BusMessage::Restored);
        drop(state);
        self.ready.notify_one();
    }

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    pub(super) async fn next(&self) -> Option<BusMessage> {
        loop {
            {
                let mut state = self.lock();
                if let Some(message) = state.queue.pop_front() {
                    if matches!(message, BusMessage::Event { .. }) {
                        state.events_queued -= 1;
                    }
                    return Some(message);
                }
                if state.closed {
                    return None;
                }
            }
            // One consumer: `notify_one` stores a permit when no one waits, so no wake-up is lost.
            self.ready.notified().await;
        }
    }
}
