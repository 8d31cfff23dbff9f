//! Who is subscribed to each channel locally, counted so that the first member to join opens the
//! channel and the last to leave closes it. The Redis bus keeps its subscriptions this way (a
//! channel is subscribed on Redis while one is open), and so does the gateway's hub (one bus
//! subscription per channel while a connection needs it).

use std::{borrow::Borrow, collections::BTreeMap};

/// One channel with members: what was made when it opened, and its members by ID.
#[derive(Debug)]
pub struct Members<S, M> {
    /// What the first member's arrival opened (a subscription, its pump, a flag).
    pub opened: S,
    /// The members, by ID.
    pub by_id: BTreeMap<u64, M>,
}

/// The channels with at least one member, by channel.
#[derive(Debug)]
pub struct ChannelMembers<K, S, M> {
    channels: BTreeMap<K, Members<S, M>>,
}

impl<K, S, M> Default for ChannelMembers<K, S, M> {
    fn default() -> Self {
        Self {
            channels: BTreeMap::new(),
        }
    }
}

impl<K: Ord, S, M> ChannelMembers<K, S, M> {
    /// Adds `member` as `id` on `channel`. A channel with no member yet is opened first with
    /// `open`; the answer says whether it was.
    pub fn join(&mut self, channel: K, id: u64, member: M, open: impl FnOnce() -> S) -> bool {
        let mut opened = false;
        self.channels
            .entry(channel)
            .or_insert_with(|| {
                opened = true;
                Members {
                    opened: open(),
                    by_id: BTreeMap::new(),
                }
            })
            .by_id
            .insert(id, member);
        opened
    }

    /// Removes member `id` from `channel`. When it was the last, the channel closes and what
    /// opened it is handed back.
    pub fn leave<Q>(&mut self, channel: &Q, id: u64) -> Option<S>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let members = self.channels.get_mut(channel)?;
        members.by_id.remove(&id);
        if !members.by_id.is_empty() {
            return None;
        }
        self.channels.remove(channel).map(|members| members.opened)
    }

    /// The members of `channel`, if it has any.
    pub fn get<Q>(&self, channel: &Q) -> Option<&Members<S, M>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.channels.get(channel)
    }

    /// Every open channel with its members, in channel order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Members<S, M>)> {
        self.channels.iter()
    }

    /// The open channels, in order.
    pub fn channels(&self) -> impl Iterator<Item = &K> {
        self.channels.keys()
    }

    /// How many channels are open.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether no channel is open.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Closes every channel at once, handing back each with its members.
    pub fn take_all(&mut self) -> impl Iterator<Item = Members<S, M>> {
        std::mem::take(&mut self.channels).into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_member_opens_a_channel_and_the_last_closes_it() {
        let mut members = ChannelMembers::<String, &str, ()>::default();
        let mut opened = 0;
        let mut open = || {
            opened += 1;
            "subscription"
        };
        assert!(members.join("a".into(), 1, (), &mut open));
        assert!(!members.join("a".into(), 2, (), &mut open));
        assert!(members.join("b".into(), 1, (), &mut open));
        assert_eq!(opened, 2);
        assert_eq!(members.get("a").map(|m| m.by_id.len()), Some(2));
        assert_eq!(members.leave("a", 1), None, "one member is left");
        assert_eq!(
            members.leave("a", 7),
            None,
            "an unknown member changes nothing"
        );
        assert_eq!(members.leave("a", 2), Some("subscription"));
        assert!(members.get("a").is_none());
        assert_eq!(members.leave("a", 2), None, "a closed channel stays closed");
        assert_eq!(members.channels().collect::<Vec<_>>(), ["b"]);
        assert_eq!(members.take_all().count(), 1);
        assert!(members.is_empty());
    }
}
