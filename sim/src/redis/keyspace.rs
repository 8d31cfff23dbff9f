//! The data and the commands of the simulated Redis: strings, hashes, sorted sets, streams,
//! pub/sub, `TIME` and key expiry (`SET … PX`), with Redis's replies and error texts for what
//! the project uses.
//!
//! Everything is ordered (`BTreeMap`), so a run is the same for the same seed. `MAXLEN ~` trims
//! exactly (Redis trims whole stream nodes and may keep more); the contract only ever relies on
//! "at least the newest N", which both satisfy.

use std::{collections::BTreeMap, time::Duration};

use redis_protocol::resp2::types::OwnedFrame as Frame;
use seams::SharedClock;
use tokio::sync::mpsc;

/// A reply: RESP2 frames (`Frame::SimpleString` is a status, `Frame::Error` an error).
pub type Reply = Frame;

/// A hash: field → value.
type Hash = BTreeMap<Vec<u8>, Vec<u8>>;

/// A sorted set: member → score (ordered by score only when read).
type SortedSet = BTreeMap<Vec<u8>, f64>;

/// What a key holds.
#[derive(Debug, Clone)]
enum Value {
    String(Vec<u8>),
    Hash(Hash),
    SortedSet(SortedSet),
    Stream(Stream),
}

#[derive(Debug, Clone, Default)]
struct Stream {
    entries: BTreeMap<(u64, u64), Vec<Vec<u8>>>,
    last_id: (u64, u64),
}

/// A subscriber connection's inbox: pub/sub messages are pushed here as they are published.
pub type Inbox = mpsc::UnboundedSender<Frame>;

/// The whole server state but scripting.
#[derive(Debug)]
pub struct Keyspace {
    data: BTreeMap<Vec<u8>, Value>,
    /// Keys set with an expiry: key → deadline (since the epoch, on `clock`).
    expiry_of: BTreeMap<Vec<u8>, Duration>,
    /// The same, by deadline, so due keys are found without a scan.
    expiring: BTreeMap<(Duration, Vec<u8>), ()>,
    /// channel → subscriber connection id → inbox.
    channels: BTreeMap<Vec<u8>, BTreeMap<u64, Inbox>>,
    clock: SharedClock,
}

pub(crate) fn ok() -> Reply {
    Frame::SimpleString(b"OK".to_vec())
}

pub(crate) fn error(text: impl Into<String>) -> Reply {
    Frame::Error(text.into())
}

fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
    Frame::BulkString(bytes.into())
}

fn wrong_type() -> Reply {
    error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

fn not_an_integer() -> Reply {
    error("ERR value is not an integer or out of range")
}

fn syntax_error() -> Reply {
    error("ERR syntax error")
}

pub(crate) fn arity(name: &str) -> Reply {
    error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

fn parse_i64(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// A score bound of `ZRANGEBYSCORE`: `-inf`, `+inf`, `x` or `(x` (exclusive).
fn parse_bound(bytes: &[u8]) -> Option<(f64, bool)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (text, exclusive) = match text.strip_prefix('(') {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let value = match text {
        "-inf" => f64::NEG_INFINITY,
        "+inf" | "inf" => f64::INFINITY,
        other => other.parse().ok()?,
    };
    (!value.is_nan()).then_some((value, exclusive))
}

/// A score as Redis prints it: integers without a fraction, others shortest round trip.
fn format_score(score: f64) -> String {
    if score.fract() == 0.0 && score.abs() < 1e17 {
        format!("{}", score as i64)
    } else if score.is_infinite() {
        if score > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{score}")
    }
}

fn format_id((ms, seq): (u64, u64)) -> String {
    format!("{ms}-{seq}")
}

/// A stream ID: `ms-seq`, or `ms` alone (then `seq` is `default_seq`).
fn parse_id(bytes: &[u8], default_seq: u64) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    match text.split_once('-') {
        Some((ms, seq)) => Some((ms.parse().ok()?, seq.parse().ok()?)),
        None => Some((text.parse().ok()?, default_seq)),
    }
}

impl Keyspace {
    /// An empty keyspace whose `TIME` reads `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            data: BTreeMap::new(),
            expiry_of: BTreeMap::new(),
            expiring: BTreeMap::new(),
            channels: BTreeMap::new(),
            clock,
        }
    }

    /// Registers `inbox` (connection `id`) on `channel`; returns how many channels it is on.
    pub fn subscribe(&mut self, id: u64, channel: &[u8], inbox: &Inbox) -> usize {
        self.channels
            .entry(channel.to_vec())
            .or_default()
            .insert(id, inbox.clone());
        self.subscription_count(id)
    }

    /// Removes connection `id` from `channel`; returns how many channels it is still on.
    pub fn unsubscribe(&mut self, id: u64, channel: &[u8]) -> usize {
        if let Some(subscribers) = self.channels.get_mut(channel) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                self.channels.remove(channel);
            }
        }
        self.subscription_count(id)
    }

    /// The channels connection `id` is subscribed to.
    pub fn subscriptions(&self, id: u64) -> Vec<Vec<u8>> {
        self.channels
            .iter()
            .filter(|(_, subscribers)| subscribers.contains_key(&id))
            .map(|(channel, _)| channel.clone())
            .collect()
    }

    fn subscription_count(&self, id: u64) -> usize {
        self.channels
            .values()
            .filter(|subscribers| subscribers.contains_key(&id))
            .count()
    }

    /// Sets or clears `key`'s expiry.
    fn set_expiry(&mut self, key: &[u8], deadline: Option<Duration>) {
        if let Some(old) = self.expiry_of.remove(key) {
            self.expiring.remove(&(old, key.to_vec()));
        }
        if let Some(deadline) = deadline {
            self.expiry_of.insert(key.to_vec(), deadline);
            self.expiring.insert((deadline, key.to_vec()), ());
        }
    }

    /// Removes every key whose expiry has come (Redis expires lazily and in the background;
    /// before each command is as good for what a client can observe).
    fn expire_due(&mut self) {
        let now = self.clock.now_since_epoch();
        while let Some(entry) = self.expiring.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, key), ()) = entry.remove_entry();
            self.expiry_of.remove(&key);
            self.data.remove(&key);
        }
    }

    /// `SET key value [PX milliseconds]`.
    fn set(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let (key, value, expiry) = match args {
            [key, value] => (key, value, None),
            [key, value, option, ms] if option.eq_ignore_ascii_case(b"PX") => match parse_i64(ms) {
                Some(ms) if ms > 0 => (key, value, Some(Duration::from_millis(ms as u64))),
                _ => return error("ERR invalid expire time in 'set' command"),
            },
            [_, _, ..] => return error("ERR syntax error"),
            _ => return arity(name),
        };
        self.data.insert(key.clone(), Value::String(value.clone()));
        let deadline = expiry.map(|ttl| self.clock.now_since_epoch() + ttl);
        self.set_expiry(key, deadline);
        ok()
    }

    /// Runs one data command (`args[0]` is its name). Scripting and subscription commands are
    /// handled by the caller.
    pub fn execute(&mut self, args: &[Vec<u8>]) -> Reply {
        let Some(name) = args.first() else {
            return error("ERR empty command");
        };
        self.expire_due();
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let args = &args[1..];
        match name.as_str() {
            "PING" => match args {
                [] => Frame::SimpleString(b"PONG".to_vec()),
                [message] => bulk(message.clone()),
                _ => arity(&name),
            },
            "ECHO" => match args {
                [message] => bulk(message.clone()),
                _ => arity(&name),
            },
            "SELECT" => match args {
                [index] if parse_i64(index) == Some(0) => ok(),
                [_] => error("ERR DB index is out of range"),
                _ => arity(&name),
            },
            "CLIENT" => ok(),
            "FLUSHALL" | "FLUSHDB" => {
                self.data.clear();
                self.expiry_of.clear();
                self.expiring.clear();
                ok()
            }
            "DBSIZE" => Frame::Integer(self.data.len() as i64),
            "TIME" => {
                let now = self.clock.now_since_epoch();
                Frame::Array(vec![
                    bulk(now.as_secs().to_string()),
                    bulk(now.subsec_micros().to_string()),
                ])
            }
            "GET" => self.get(&name, args),
            "SET" => self.set(&name, args),
            "DEL" if !args.is_empty() => {
                for key in args {
                    self.set_expiry(key, None);
                }
                let removed = args
                    .iter()
                    .filter(|key| self.data.remove(*key).is_some())
                    .count();
                Frame::Integer(removed as i64)
            }
            "EXISTS" if !args.is_empty() => {
                let present = args
                    .iter()
                    .filter(|key| self.data.contains_key(*key))
                    .count();
                Frame::Integer(present as i64)
            }
            "INCR" => self.incr(&name, args),
            "HSET" => self.hset(&name, args),
            "HGET" => self.hget(&name, args),
            "HDEL" => self.hdel(&name, args),
            "HGETALL" => self.hgetall(&name, args),
            "ZADD" => self.zadd(&name, args),
            "ZREM" => self.zrem(&name, args),
            "ZCARD" => self.zcard(&name, args),
            "ZSCORE" => self.zscore(&name, args),
            "ZRANGEBYSCORE" => self.zrangebyscore(&name, args),
            "XADD" => self.xadd(&name, args),
            "XRANGE" => self.xrange(&name, args),
            "XLEN" => self.xlen(&name, args),
            "PUBLISH" => match args {
                [channel, message] => Frame::Integer(self.publish(channel, message) as i64),
                _ => arity(&name),
            },
            "PUBSUB" => self.pubsub(args),
            "DEL" | "EXISTS" => arity(&name),
            _ => error(format!(
                "ERR unknown command '{}', with args beginning with: ",
                name.to_ascii_lowercase()
            )),
        }
    }

    /// Delivers `message` to every subscriber of `channel`; returns how many.
    fn publish(&mut self, channel: &[u8], message: &[u8]) -> usize {
        let Some(subscribers) = self.channels.get(channel) else {
            return 0;
        };
        for inbox in subscribers.values() {
            // A subscriber whose connection just ended is dropped at its unsubscribe.
            let _ = inbox.send(Frame::Array(vec![
                bulk(b"message".to_vec()),
                bulk(channel.to_vec()),
                bulk(message.to_vec()),
            ]));
        }
        subscribers.len()
    }

    fn pubsub(&self, args: &[Vec<u8>]) -> Reply {
        match args.split_first() {
            Some((sub, channels)) if sub.eq_ignore_ascii_case(b"NUMSUB") => Frame::Array(
                channels
                    .iter()
                    .flat_map(|channel| {
                        let count = self.channels.get(channel).map_or(0, BTreeMap::len);
                        [bulk(channel.clone()), Frame::Integer(count as i64)]
                    })
                    .collect(),
            ),
            _ => error("ERR unknown PUBSUB subcommand"),
        }
    }

    fn get(&self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key] = args else { return arity(name) };
        match self.data.get(key) {
            None => Frame::Null,
            Some(Value::String(value)) => bulk(value.clone()),
            Some(_) => wrong_type(),
        }
    }

    fn incr(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key] = args else { return arity(name) };
        let current = match self.data.get(key) {
            None => 0,
            Some(Value::String(value)) => match parse_i64(value) {
                Some(number) => number,
                None => return not_an_integer(),
            },
            Some(_) => return wrong_type(),
        };
        let Some(next) = current.checked_add(1) else {
            return error("ERR increment or decrement would overflow");
        };
        self.data
            .insert(key.clone(), Value::String(next.to_string().into_bytes()));
        Frame::Integer(next)
    }

    fn hash_mut(&mut self, key: &[u8]) -> Result<&mut Hash, Reply> {
        match self
            .data
            .entry(key.to_vec())
            .or_insert_with(|| Value::Hash(BTreeMap::new()))
        {
            Value::Hash(hash) => Ok(hash),
            _ => Err(wrong_type()),
        }
    }

    fn hash(&self, key: &[u8]) -> Result<Option<&Hash>, Reply> {
        match self.data.get(key) {
            None => Ok(None),
            Some(Value::Hash(hash)) => Ok(Some(hash)),
            Some(_) => Err(wrong_type()),
        }
    }

    fn hset(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let Some((key, pairs)) = args.split_first() else {
            return arity(name);
        };
        if pairs.is_empty() || pairs.len() % 2 != 0 {
            return arity(name);
        }
        match self.hash_mut(key) {
            Ok(hash) => {
                let added = pairs
                    .chunks(2)
                    .filter(|pair| hash.insert(pair[0].clone(), pair[1].clone()).is_none())
                    .count();
                Frame::Integer(added as i64)
            }
            Err(reply) => reply,
        }
    }

    fn hget(&self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key, field] = args else {
            return arity(name);
        };
        match self.hash(key) {
            Ok(hash) => hash
                .and_then(|hash| hash.get(field))
                .map_or(Frame::Null, |value| bulk(value.clone())),
            Err(reply) => reply,
        }
    }

    fn hgetall(&self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key] = args else { return arity(name) };
        match self.hash(key) {
            Ok(hash) => Frame::Array(
                hash.into_iter()
                    .flatten()
                    .flat_map(|(field, value)| [bulk(field.clone()), bulk(value.clone())])
                    .collect(),
            ),
            Err(reply) => reply,
        }
    }

    fn hdel(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let Some((key, fields)) = args.split_first() else {
            return arity(name);
        };
        if fields.is_empty() {
            return arity(name);
        }
        match self.data.get_mut(key) {
            None => Frame::Integer(0),
            Some(Value::Hash(hash)) => {
                let removed = fields
                    .iter()
                    .filter(|field| hash.remove(*field).is_some())
                    .count();
                if hash.is_empty() {
                    self.data.remove(key);
                }
                Frame::Integer(removed as i64)
            }
            Some(_) => wrong_type(),
        }
    }

    fn zset(&self, key: &[u8]) -> Result<Option<&SortedSet>, Reply> {
        match self.data.get(key) {
            None => Ok(None),
            Some(Value::SortedSet(set)) => Ok(Some(set)),
            Some(_) => Err(wrong_type()),
        }
    }

    fn zadd(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let Some((key, mut rest)) = args.split_first() else {
            return arity(name);
        };
        let (mut nx, mut xx, mut ch) = (false, false, false);
        while let Some((flag, tail)) = rest.split_first() {
            match flag.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                b"CH" => ch = true,
                _ => break,
            }
            rest = tail;
        }
        if nx && xx {
            return error("ERR XX and NX options at the same time are not compatible");
        }
        if rest.is_empty() || rest.len() % 2 != 0 {
            return syntax_error();
        }
        let mut pairs = Vec::with_capacity(rest.len() / 2);
        for pair in rest.chunks(2) {
            match std::str::from_utf8(&pair[0])
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
            {
                Some(score) if !score.is_nan() => pairs.push((score, pair[1].clone())),
                _ => return error("ERR value is not a valid float"),
            }
        }
        let set = match self
            .data
            .entry(key.clone())
            .or_insert_with(|| Value::SortedSet(BTreeMap::new()))
        {
            Value::SortedSet(set) => set,
            _ => return wrong_type(),
        };
        let (mut added, mut changed) = (0, 0);
        for (score, member) in pairs {
            match set.get_mut(&member) {
                Some(current) if !nx && *current != score => {
                    *current = score;
                    changed += 1;
                }
                Some(_) => {}
                None if !xx => {
                    set.insert(member, score);
                    added += 1;
                }
                None => {}
            }
        }
        if set.is_empty() {
            self.data.remove(key);
        }
        Frame::Integer(if ch { added + changed } else { added })
    }

    fn zrem(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let Some((key, members)) = args.split_first() else {
            return arity(name);
        };
        if members.is_empty() {
            return arity(name);
        }
        match self.data.get_mut(key) {
            None => Frame::Integer(0),
            Some(Value::SortedSet(set)) => {
                let removed = members
                    .iter()
                    .filter(|member| set.remove(*member).is_some())
                    .count();
                if set.is_empty() {
                    self.data.remove(key);
                }
                Frame::Integer(removed as i64)
            }
            Some(_) => wrong_type(),
        }
    }

    fn zcard(&self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key] = args else { return arity(name) };
        match self.zset(key) {
            Ok(set) => Frame::Integer(set.map_or(0, BTreeMap::len) as i64),
            Err(reply) => reply,
        }
    }

    fn zscore(&self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key, member] = args else {
            return arity(name);
        };
        match self.zset(key) {
            Ok(set) => set
                .and_then(|set| set.get(member))
                .map_or(Frame::Null, |score| bulk(format_score(*score))),
            Err(reply) => reply,
        }
    }

    fn zrangebyscore(&self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key, min, max, options @ ..] = args else {
            return arity(name);
        };
        let (Some((min, min_open)), Some((max, max_open))) = (parse_bound(min), parse_bound(max))
        else {
            return error("ERR min or max is not a float");
        };
        let (mut with_scores, mut offset, mut count) = (false, 0usize, None::<usize>);
        let mut rest = options;
        while let Some((option, tail)) = rest.split_first() {
            match option.to_ascii_uppercase().as_slice() {
                b"WITHSCORES" => {
                    with_scores = true;
                    rest = tail;
                }
                b"LIMIT" => match tail {
                    [from, limit, tail @ ..] => {
                        let (Some(from), Some(limit)) = (parse_i64(from), parse_i64(limit)) else {
                            return not_an_integer();
                        };
                        offset = usize::try_from(from).unwrap_or(usize::MAX);
                        count = usize::try_from(limit).ok();
                        rest = tail;
                    }
                    _ => return syntax_error(),
                },
                _ => return syntax_error(),
            }
        }
        let set = match self.zset(key) {
            Ok(set) => set,
            Err(reply) => return reply,
        };
        let mut members: Vec<(f64, &Vec<u8>)> = set
            .into_iter()
            .flatten()
            .map(|(member, score)| (*score, member))
            .filter(|(score, _)| {
                (if min_open {
                    *score > min
                } else {
                    *score >= min
                }) && (if max_open {
                    *score < max
                } else {
                    *score <= max
                })
            })
            .collect();
        // Redis orders by score, then by member bytes.
        members.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let chosen = members
            .into_iter()
            .skip(offset)
            .take(count.unwrap_or(usize::MAX));
        Frame::Array(
            chosen
                .flat_map(|(score, member)| {
                    let mut items = vec![bulk(member.clone())];
                    if with_scores {
                        items.push(bulk(format_score(score)));
                    }
                    items
                })
                .collect(),
        )
    }

    fn xadd(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let Some((key, mut rest)) = args.split_first() else {
            return arity(name);
        };
        let mut maxlen = None;
        if let Some((option, tail)) = rest.split_first()
            && option.eq_ignore_ascii_case(b"MAXLEN")
        {
            // `~` (trim at least to) and `=` (exactly) both trim exactly here.
            let tail = match tail.split_first() {
                Some((mode, after_mode)) if mode.as_slice() == b"~" || mode.as_slice() == b"=" => {
                    after_mode
                }
                _ => tail,
            };
            let Some((threshold, tail)) = tail.split_first() else {
                return syntax_error();
            };
            let Some(threshold) = parse_u64(threshold) else {
                return not_an_integer();
            };
            maxlen = Some(threshold as usize);
            rest = tail;
        }
        let Some((id, fields)) = rest.split_first() else {
            return arity(name);
        };
        if fields.is_empty() || fields.len() % 2 != 0 {
            return arity(name);
        }
        let now_ms = self.clock.now_since_epoch().as_millis() as u64;
        let stream = match self
            .data
            .entry(key.clone())
            .or_insert_with(|| Value::Stream(Stream::default()))
        {
            Value::Stream(stream) => stream,
            _ => return wrong_type(),
        };
        let id = if id.as_slice() == b"*" {
            let (last_ms, last_seq) = stream.last_id;
            if now_ms > last_ms {
                (now_ms, 0)
            } else {
                (last_ms, last_seq + 1)
            }
        } else {
            match parse_id(id, 0) {
                Some(id) => id,
                None => return error("ERR Invalid stream ID specified as stream command argument"),
            }
        };
        if id == (0, 0) {
            return error("ERR The ID specified in XADD must be greater than 0-0");
        }
        if id <= stream.last_id {
            return error(
                "ERR The ID specified in XADD is equal or smaller than the target stream top item",
            );
        }
        stream.entries.insert(id, fields.to_vec());
        stream.last_id = id;
        if let Some(maxlen) = maxlen {
            while stream.entries.len() > maxlen {
                stream.entries.pop_first();
            }
        }
        bulk(format_id(id))
    }

    fn xrange(&self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key, start, end, options @ ..] = args else {
            return arity(name);
        };
        // `-` and `+` are the smallest and the largest ID wherever they stand.
        let bound = |id: &[u8], default_seq| match id {
            b"-" => Some((0, 0)),
            b"+" => Some((u64::MAX, u64::MAX)),
            id => parse_id(id, default_seq),
        };
        let (start, end) = (bound(start, 0), bound(end, u64::MAX));
        let (Some(start), Some(end)) = (start, end) else {
            return error("ERR Invalid stream ID specified as stream command argument");
        };
        let count = match options {
            [] => usize::MAX,
            [option, count] if option.eq_ignore_ascii_case(b"COUNT") => match parse_i64(count) {
                Some(count) => usize::try_from(count).unwrap_or(0),
                None => return not_an_integer(),
            },
            _ => return syntax_error(),
        };
        let stream = match self.data.get(key) {
            None => return Frame::Array(Vec::new()),
            Some(Value::Stream(stream)) => stream,
            Some(_) => return wrong_type(),
        };
        if start > end {
            return Frame::Array(Vec::new());
        }
        Frame::Array(
            stream
                .entries
                .range(start..=end)
                .take(count)
                .map(|(id, fields)| {
                    Frame::Array(vec![
                        bulk(format_id(*id)),
                        Frame::Array(fields.iter().map(|f| bulk(f.clone())).collect()),
                    ])
                })
                .collect(),
        )
    }

    fn xlen(&self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [key] = args else { return arity(name) };
        match self.data.get(key) {
            None => Frame::Integer(0),
            Some(Value::Stream(stream)) => Frame::Integer(stream.entries.len() as i64),
            Some(_) => wrong_type(),
        }
    }
}
