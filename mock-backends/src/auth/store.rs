//! Auth's in-memory state besides keys: refresh tokens, revoked token IDs and permission grants,
//! each bounded.

use std::collections::{BTreeMap, BTreeSet};

/// A map that forgets its oldest entry when full. Ordered maps throughout, so nothing depends on
/// hash order.
#[derive(Debug)]
pub(crate) struct BoundedMap<V> {
    entries: BTreeMap<String, (u64, V)>,
    /// Insertion number → key, oldest first, for eviction.
    order: BTreeMap<u64, String>,
    next: u64,
    len_max: usize,
}

impl<V> BoundedMap<V> {
    pub(crate) fn new(len_max: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            next: 0,
            len_max: len_max.max(1),
        }
    }

    /// Inserts `key`, replacing any earlier value, then evicts the oldest entries beyond the bound.
    pub(crate) fn insert(&mut self, key: String, value: V) {
        self.remove(&key);
        let number = self.next;
        self.next += 1;
        self.order.insert(number, key.clone());
        self.entries.insert(key, (number, value));
        while self.entries.len() > self.len_max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let (number, value) = self.entries.remove(key)?;
        self.order.remove(&number);
        Some(value)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key).map(|(_, value)| value)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }
}

/// What a permission allows. `Write` implies `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Action {
    Read,
    Write,
}

impl Action {
    pub(crate) fn parse(action: &str) -> Option<Self> {
        match action {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
}

/// The permission grants: (user ID, resource, action).
#[derive(Debug)]
pub(crate) struct Permissions {
    grants: BTreeSet<(String, String, Action)>,
    len_max: usize,
}

/// The grant table is full.
#[derive(Debug)]
pub(crate) struct PermissionsFull;

impl Permissions {
    pub(crate) fn new(len_max: usize) -> Self {
        Self {
            grants: BTreeSet::new(),
            len_max,
        }
    }

    /// Grants `action`; granting what is already granted succeeds and adds nothing.
    pub(crate) fn grant(
        &mut self,
        user_id: &str,
        resource: &str,
        action: Action,
    ) -> Result<(), PermissionsFull> {
        let grant = (user_id.to_owned(), resource.to_owned(), action);
        if self.grants.contains(&grant) {
            return Ok(());
        }
        if self.grants.len() >= self.len_max {
            return Err(PermissionsFull);
        }
        self.grants.insert(grant);
        Ok(())
    }

    /// Takes `action` away. Taking `read` also takes `write`, which implies it.
    pub(crate) fn revoke(&mut self, user_id: &str, resource: &str, action: Action) {
        let mut take = |action| {
            self.grants
                .remove(&(user_id.to_owned(), resource.to_owned(), action));
        };
        take(Action::Write);
        if action == Action::Read {
            take(Action::Read);
        }
    }

    /// Whether `user_id` was granted `action` on `resource`, or `write` when asking for `read`.
    pub(crate) fn allows(&self, user_id: &str, resource: &str, action: Action) -> bool {
        let granted = |action| {
            self.grants
                .contains(&(user_id.to_owned(), resource.to_owned(), action))
        };
        granted(Action::Write) || (action == Action::Read && granted(Action::Read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_forgets_the_oldest() {
        let mut map = BoundedMap::new(2);
        map.insert("a".to_owned(), 1);
        map.insert("b".to_owned(), 2);
        map.insert("c".to_owned(), 3);
        assert!(!map.contains_key("a"));
        assert_eq!(map.remove("b"), Some(2));
        assert!(map.contains_key("c"));
    }

    #[test]
    fn write_implies_read_but_not_the_reverse() {
        let mut permissions = Permissions::new(10);
        permissions
            .grant("u", "project:p-1", Action::Write)
            .unwrap();
        permissions.grant("u", "project:p-2", Action::Read).unwrap();
        assert!(permissions.allows("u", "project:p-1", Action::Read));
        assert!(permissions.allows("u", "project:p-2", Action::Read));
        assert!(!permissions.allows("u", "project:p-2", Action::Write));
        assert!(!permissions.allows("v", "project:p-1", Action::Read));
    }

    #[test]
    fn revoking_read_takes_write_too_but_not_the_reverse() {
        let mut permissions = Permissions::new(10);
        permissions.grant("u", "r", Action::Write).unwrap();
        permissions.grant("u", "r", Action::Read).unwrap();
        permissions.revoke("u", "r", Action::Write);
        assert!(permissions.allows("u", "r", Action::Read));
        assert!(!permissions.allows("u", "r", Action::Write));
        permissions.grant("u", "r", Action::Write).unwrap();
        permissions.revoke("u", "r", Action::Read);
        assert!(!permissions.allows("u", "r", Action::Read));
    }

    #[test]
    fn full_table_refuses_new_grants_but_accepts_repeats() {
        let mut permissions = Permissions::new(1);
        permissions.grant("u", "r", Action::Read).unwrap();
        permissions.grant("u", "r", Action::Read).unwrap();
        assert!(permissions.grant("u", "s", Action::Read).is_err());
    }
}
