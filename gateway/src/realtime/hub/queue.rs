//! The bounded outbound queue of one connection.
//!
//! Event frames arrive already serialised and shared ([`Utf8Bytes`] clones are reference counts).
//! The queue keeps the per-connection promises of the protocol: offsets only move forward (no
//! duplicates after a recovery), every offset skipped is either filtered by audience or reported
//! in a `gap` frame, and a full queue either conflates (simulation channels: drop the backlog,
//! keep the newest, report the gap) or closes the connection as a slow consumer.

use std::{collections::VecDeque, sync::Mutex};

use axum::extract::ws::Utf8Bytes;
use events::Event;
use tokio::sync::Notify;

use super::protocol::{ServerFrame, close_code};

/// What the connection task sends next.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A text frame.
    Text(Utf8Bytes),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

#[derive(Debug)]
struct Queued {
    text: Utf8Bytes,
    /// The event offset, for event frames (they may be conflated); `None` for control frames.
    offset: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Queued>,
    /// Highest offset delivered or deliberately skipped (filtered by audience).
    last_offset: u64,
    epoch: Option<String>,
    /// While the connection replays history on join, live events wait here.
    buffered: Option<Vec<(std::sync::Arc<Event>, Utf8Bytes, bool)>>,
    closing: Option<(u16, &'static str)>,
}

/// One connection's outbound queue.
#[derive(Debug)]
pub struct OutQueue {
    channel: String,
    len_max: usize,
    conflate: bool,
    state: Mutex<State>,
    ready: Notify,
}

impl OutQueue {
    /// An empty queue that buffers live events until [`OutQueue::go_live`].
    pub fn new(channel: &str, len_max: usize, conflate: bool) -> Self {
        Self {
            channel: channel.to_owned(),
            len_max: len_max.max(1),
            conflate,
            state: Mutex::new(State {
                buffered: Some(Vec::new()),
                ..State::default()
            }),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets where delivery starts: the epoch and the last offset the client already has.
    pub fn start_at(&self, epoch: &str, last_offset: u64) {
        let mut state = self.lock();
        state.epoch = Some(epoch.to_owned());
        state.last_offset = last_offset;
    }

    /// Queues a control frame (welcome, gap, error, pong). Control frames are few and small;
    /// a client that lets them pile up past twice the queue bound is a slow consumer.
    pub fn push_control(&self, frame: &ServerFrame<'_>) {
        let mut state = self.lock();
        if state.closing.is_some() {
            return;
        }
        if state.frames.len() >= self.len_max * 2 {
            state.closing = Some((close_code::SLOW_CONSUMER, "slow consumer"));
        } else {
            state.frames.push_back(Queued {
                text: frame.to_text().as_ref().into(),
                offset: None,
            });
        }
        drop(state);
        self.ready.notify_one();
    }

    /// Offers an event, live or (with `replay`) from history. `admitted` is false when the
    /// event's audience excludes this client: its offset then counts as seen, not as a gap.
    /// Returns false once the connection is closing.
    pub fn push_event(
        &self,
        event: &std::sync::Arc<Event>,
        frame: &Utf8Bytes,
        admitted: bool,
        replay: bool,
    ) -> bool {
        let mut state = self.lock();
        if state.closing.is_some() {
            return false;
        }
        if !replay && let Some(buffered) = state.buffered.as_mut() {
            if buffered.len() < self.len_max * 4 {
                buffered.push((event.clone(), frame.clone(), admitted));
            } else {
                state.closing = Some((close_code::SLOW_CONSUMER, "slow consumer"));
            }
            return state.closing.is_none();
        }
        self.accept(&mut state, event, frame, admitted, replay);
        let open = state.closing.is_none();
        drop(state);
        self.ready.notify_one();
        open
    }

    /// Ends the replay: events that arrived live meanwhile are delivered, minus any the replay
    /// already covered. A connection closed during the replay (a revocation) gets none of them.
    pub fn go_live(&self) {
        let mut state = self.lock();
        let buffered = state.buffered.take().unwrap_or_default();
        if state.closing.is_some() {
            return;
        }
        for (event, frame, admitted) in &buffered {
            self.accept(&mut state, event, frame, *admitted, true);
        }
        drop(state);
        self.ready.notify_one();
    }

    /// Asks the connection to close.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.lock().closing.get_or_insert((code, reason));
        self.ready.notify_one();
    }

    /// Whether the connection is closing.
    pub fn is_closing(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// The next frame if one is ready, without waiting.
    pub fn try_next(&self) -> Option<Outbound> {
        let mut state = self.lock();
        match state.frames.pop_front() {
            Some(frame) => Some(Outbound::Text(frame.text)),
            None => state
                .closing
                .map(|(code, reason)| Outbound::Close(code, reason)),
        }
    }

    /// The next frame to send; waits until there is one.
    pub async fn next(&self) -> Outbound {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if let Some(frame) = state.frames.pop_front() {
                    return Outbound::Text(frame.text);
                }
                if let Some((code, reason)) = state.closing {
                    return Outbound::Close(code, reason);
                }
            }
            notified.await;
        }
    }

    fn gap(&self, from: u64, to: Option<u64>, reason: &str) -> Queued {
        Queued {
            text: ServerFrame::Gap {
                channel: &self.channel,
                from_offset: from,
                to_offset: to,
                reason,
            }
            .to_text()
            .as_ref()
            .into(),
            offset: None,
        }
    }

    /// Queues one event. `catching_up` (a replay from history, or what arrived live during it)
    /// never closes a plain channel's connection as a slow consumer: the client asked for that
    /// backlog, bounded by the channel's history, and closing would make it ask again forever.
    fn accept(
        &self,
        state: &mut State,
        event: &Event,
        frame: &Utf8Bytes,
        admitted: bool,
        catching_up: bool,
    ) {
        if state.epoch.as_deref() != Some(&event.epoch) {
            // History was lost and offsets restarted: nothing before this event can be recovered.
            if state.epoch.is_some() {
                let gap = self.gap(state.last_offset + 1, None, "epoch_changed");
                state.frames.push_back(gap);
            }
            state.epoch = Some(event.epoch.clone());
            state.last_offset = event.offset.saturating_sub(1);
        }
        if event.offset <= state.last_offset {
            return; // Already delivered (a replay overlapping live events).
        }
        if event.offset > state.last_offset + 1 {
            let gap = self.gap(state.last_offset + 1, Some(event.offset - 1), "missed");
            state.frames.push_back(gap);
        }
        if !admitted {
            state.last_offset = event.offset;
            return;
        }
        if state.frames.len() >= self.len_max && (self.conflate || !catching_up) {
            if !self.conflate {
                state.closing = Some((close_code::SLOW_CONSUMER, "slow consumer"));
                return;
            }
            // Conflate: drop the queued events, report their offsets as one gap, keep the newest.
            let first_dropped = state.frames.iter().filter_map(|f| f.offset).min();
            state.frames.retain(|f| f.offset.is_none());
            if let Some(first) = first_dropped {
                let gap = self.gap(first, Some(event.offset - 1), "conflated");
                state.frames.push_back(gap);
            }
        }
        state.frames.push_back(Queued {
            text: frame.clone(),
            offset: Some(event.offset),
        });
        state.last_offset = event.offset;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::realtime::hub::protocol::event_frame;

    fn event(offset: u64) -> (Arc<Event>, Utf8Bytes) {
        let event: Event = serde_json::from_str(&format!(
            r#"{{"channel":"simulation:s-1","offset":{offset},"epoch":"e","data":{offset}}}"#
        ))
        .unwrap();
        let frame = event_frame(&event).as_ref().into();
        (Arc::new(event), frame)
    }

    fn drain(queue: &OutQueue) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        loop {
            let mut state = queue.lock();
            let Some(frame) = state.frames.pop_front() else {
                return out;
            };
            drop(state);
            out.push(serde_json::from_str(frame.text.as_str()).unwrap());
        }
    }

    fn live(conflate: bool, len_max: usize) -> OutQueue {
        let queue = OutQueue::new("simulation:s-1", len_max, conflate);
        queue.start_at("e", 0);
        queue.go_live();
        queue
    }

    #[test]
    fn duplicates_are_dropped_and_jumps_are_reported_as_gaps() {
        let queue = live(false, 10);
        for offset in [1, 2, 2, 1, 5] {
            let (event, frame) = event(offset);
            queue.push_event(&event, &frame, true, false);
        }
        let frames = drain(&queue);
        let kinds: Vec<_> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["event", "event", "gap", "event"]);
        assert_eq!(frames[2]["from_offset"], 3);
        assert_eq!(frames[2]["to_offset"], 4);
    }

    #[test]
    fn a_replay_longer_than_the_queue_is_not_a_slow_consumer_but_falling_behind_after_is() {
        let queue = OutQueue::new("user:u-1", 3, false);
        queue.start_at("e", 0);
        let push = |offset, replay| {
            let (event, frame) = event(offset);
            queue.push_event(&event, &frame, true, replay)
        };
        for offset in 1..=8 {
            assert!(push(offset, true), "replayed {offset}");
        }
        assert!(push(9, false), "buffered during the replay");
        queue.go_live();
        assert!(queue.lock().closing.is_none());
        // Live again, with the backlog still unread: the next event is one too many.
        assert!(!push(10, false));
        assert_eq!(queue.lock().closing.map(|(code, _)| code), Some(4008));
    }

    #[test]
    fn a_full_conflating_queue_keeps_the_newest_and_reports_the_rest() {
        let queue = live(true, 3);
        for offset in 1..=5 {
            let (event, frame) = event(offset);
            assert!(queue.push_event(&event, &frame, true, false));
        }
        let frames = drain(&queue);
        // 1, 2, 3 queued; 4 conflates them into a gap and stays; 5 follows.
        assert_eq!(frames[0]["type"], "gap");
        assert_eq!(frames[0]["reason"], "conflated");
        assert_eq!(frames[0]["from_offset"], 1);
        assert_eq!(frames[0]["to_offset"], 3);
        assert_eq!(frames[1]["offset"], 4);
        assert_eq!(frames[2]["offset"], 5);
    }

    #[test]
    fn a_full_queue_without_conflation_closes_as_slow_consumer() {
        let queue = live(false, 2);
        let mut open = true;
        for offset in 1..=3 {
            let (event, frame) = event(offset);
            open = queue.push_event(&event, &frame, true, false);
        }
        assert!(!open);
        assert!(queue.is_closing());
    }

    #[test]
    fn live_events_wait_for_the_replay_and_are_not_duplicated() {
        let queue = OutQueue::new("simulation:s-1", 10, false);
        queue.start_at("e", 1);
        let (four, four_frame) = event(4);
        queue.push_event(&four, &four_frame, true, false); // live, buffered
        for offset in 2..=4 {
            let (event, frame) = event(offset);
            queue.push_event(&event, &frame, true, true); // replayed
        }
        queue.go_live();
        let offsets: Vec<u64> = drain(&queue)
            .iter()
            .map(|f| f["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [2, 3, 4]);
    }

    /// A revocation closes a connection while it joins: the replay stops, and what arrived live
    /// meanwhile is not delivered either. (It used to be, after the close was decided, behind a
    /// `missed` gap for the replay the closing queue had refused: the simulation saw a revoked
    /// token's connection sent both.)
    #[test]
    fn a_connection_closed_during_its_replay_gets_nothing_more() {
        let queue = OutQueue::new("simulation:s-1", 10, false);
        queue.start_at("e", 0);
        let (three, three_frame) = event(3);
        queue.push_event(&three, &three_frame, true, false); // live, buffered
        let (one, one_frame) = event(1);
        queue.push_event(&one, &one_frame, true, true); // replayed
        queue.close(close_code::REVOKED, "token revoked");
        let (two, two_frame) = event(2);
        assert!(!queue.push_event(&two, &two_frame, true, true));
        queue.go_live();
        let offsets: Vec<u64> = drain(&queue)
            .iter()
            .map(|f| f["offset"].as_u64().expect("only events"))
            .collect();
        assert_eq!(offsets, [1]);
        assert!(matches!(queue.try_next(), Some(Outbound::Close(4003, _))));
    }

    #[test]
    fn filtered_offsets_are_not_gaps() {
        let queue = live(false, 10);
        let (one, one_frame) = event(1);
        let (two, two_frame) = event(2);
        let (three, three_frame) = event(3);
        queue.push_event(&one, &one_frame, true, false);
        queue.push_event(&two, &two_frame, false, false);
        queue.push_event(&three, &three_frame, true, false);
        let kinds: Vec<_> = drain(&queue)
            .iter()
            .map(|f| f["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, ["event", "event"]);
    }
}
