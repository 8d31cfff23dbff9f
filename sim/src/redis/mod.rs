//! A simulated Redis: the subset of RESP2 the project uses, served over any `Net` listener, so
//! the gateway's real Redis client code (redis-rs) runs against it in simulation.
//!
//! - [`keyspace`]: strings, hashes, sorted sets, streams, pub/sub, `TIME` (from the injected
//!   clock: simulated time in a simulation).
//! - [`scripting`]: `EVAL`/`EVALSHA`/`SCRIPT`, running the project's Lua scripts unchanged on Lua
//!   5.1, as Redis does.
//!
//! Its fidelity is pinned by `sim/tests/redis_fidelity.rs`, which runs one command script against
//! it and against a real Redis and compares the replies. State lives in the [`SimRedis`] value:
//! a host that crashes and restarts starts empty, as a Redis without persistence does.

pub mod keyspace;
pub mod scripting;

use std::{
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use redis_protocol::resp2::{
    decode::decode,
    encode::encode,
    types::{OwnedFrame as Frame, Resp2Frame},
};
use seams::{NetListener, SharedClock};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use self::{
    keyspace::{Inbox, Keyspace, Reply, arity, error, ok},
    scripting::Scripts,
};

/// Largest request accepted; beyond it the connection is closed (Redis's default is 512 MB; the
/// project sends kilobytes).
const REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;

struct Server {
    keyspace: Keyspace,
    scripts: Scripts,
}

/// One simulated Redis server. Cheap to clone; clones share the data.
#[derive(Clone)]
pub struct SimRedis {
    server: Arc<Mutex<Server>>,
    next_connection: Arc<AtomicU64>,
}

impl std::fmt::Debug for SimRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRedis").finish_non_exhaustive()
    }
}

impl SimRedis {
    /// An empty server whose `TIME` reads `clock`.
    pub fn new(clock: SharedClock) -> Self {
        let scripts = Scripts::new().unwrap_or_else(|e| panic!("the Lua state must start: {e}"));
        Self {
            server: Arc::new(Mutex::new(Server {
                keyspace: Keyspace::new(clock),
                scripts,
            })),
            next_connection: Arc::new(AtomicU64::new(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Server> {
        self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts connections on `listener` and serves each until it closes. Runs until accepting
    /// fails.
    pub async fn serve<L: NetListener>(self, mut listener: L) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let server = self.clone();
            tokio::spawn(async move { server.connection(stream).await });
        }
    }

    /// Serves one client connection.
    pub async fn connection<S: AsyncRead + AsyncWrite + Unpin>(self, stream: S) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (inbox, mut messages) = mpsc::unbounded_channel();
        let mut buffer: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        'serve: loop {
            tokio::select! {
                read = reader.read(&mut chunk) => {
                    let read = match read {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    buffer.extend_from_slice(&chunk[..read]);
                    if buffer.len() > REQUEST_BYTES_MAX {
                        break;
                    }
                    let mut out = Vec::new();
                    loop {
                        match decode(&buffer) {
                            Ok(Some((frame, used))) => {
                                buffer.drain(..used);
                                for reply in self.request(id, frame, &inbox) {
                                    write_frame(&mut out, &reply);
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {
                                write_frame(&mut out, &error("ERR Protocol error"));
                                let _ = writer.write_all(&out).await;
                                break 'serve;
                            }
                        }
                    }
                    if writer.write_all(&out).await.is_err() {
                        break;
                    }
                }
                Some(message) = messages.recv() => {
                    let mut out = Vec::new();
                    write_frame(&mut out, &message);
                    if writer.write_all(&out).await.is_err() {
                        break;
                    }
                }
            }
        }
        let mut server = self.lock();
        for channel in server.keyspace.subscriptions(id) {
            server.keyspace.unsubscribe(id, &channel);
        }
    }

    /// Answers one request frame; subscription commands may answer with several frames.
    fn request(&self, id: u64, frame: Frame, inbox: &Inbox) -> Vec<Reply> {
        let Frame::Array(items) = frame else {
            return vec![error(
                "ERR Protocol error: expected an array of bulk strings",
            )];
        };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Frame::BulkString(bytes) | Frame::SimpleString(bytes) => args.push(bytes),
                _ => return vec![error("ERR Protocol error: expected bulk strings")],
            }
        }
        let Some(name) = args.first() else {
            return vec![error("ERR empty command")];
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let mut server = self.lock();
        let subscribed = !server.keyspace.subscriptions(id).is_empty();
        match name.as_str() {
            "SUBSCRIBE" if args.len() > 1 => args[1..]
                .iter()
                .map(|channel| {
                    let count = server.keyspace.subscribe(id, channel, inbox);
                    subscription_reply("subscribe", Some(channel), count)
                })
                .collect(),
            "UNSUBSCRIBE" => {
                let channels = if args.len() > 1 {
                    args[1..].to_vec()
                } else {
                    server.keyspace.subscriptions(id)
                };
                if channels.is_empty() {
                    return vec![subscription_reply("unsubscribe", None, 0)];
                }
                channels
                    .iter()
                    .map(|channel| {
                        let count = server.keyspace.unsubscribe(id, channel);
                        subscription_reply("unsubscribe", Some(channel), count)
                    })
                    .collect()
            }
            "PING" if subscribed => vec![Frame::Array(vec![
                Frame::BulkString(b"pong".to_vec()),
                Frame::BulkString(args.get(1).cloned().unwrap_or_default()),
            ])],
            _ if subscribed => vec![error(format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                name.to_ascii_lowercase()
            ))],
            "SUBSCRIBE" => vec![arity(&name)],
            "EVAL" | "EVALSHA" => vec![server.eval(&name, &args[1..])],
            "SCRIPT" => vec![server.script(&args[1..])],
            _ => vec![server.keyspace.execute(&args)],
        }
    }
}

impl Server {
    fn eval(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let [script, numkeys, rest @ ..] = args else {
            return arity(name);
        };
        let Some(numkeys) = std::str::from_utf8(numkeys)
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return error("ERR value is not an integer or out of range");
        };
        if numkeys > rest.len() {
            return error("ERR Number of keys can't be greater than number of args");
        }
        let sha = if name == "EVAL" {
            match self.scripts.load(script) {
                Ok(sha) => sha,
                Err(reply) => return reply,
            }
        } else {
            String::from_utf8_lossy(script).into_owned()
        };
        let (keys, argv) = rest.split_at(numkeys);
        self.scripts.eval(&mut self.keyspace, &sha, keys, argv)
    }

    fn script(&mut self, args: &[Vec<u8>]) -> Reply {
        let Some((sub, rest)) = args.split_first() else {
            return arity("script");
        };
        match (sub.to_ascii_uppercase().as_slice(), rest) {
            (b"LOAD", [body]) => match self.scripts.load(body) {
                Ok(sha) => Frame::BulkString(sha.into_bytes()),
                Err(reply) => reply,
            },
            (b"EXISTS", shas) if !shas.is_empty() => Frame::Array(
                shas.iter()
                    .map(|sha| {
                        Frame::Integer(i64::from(
                            self.scripts.exists(&String::from_utf8_lossy(sha)),
                        ))
                    })
                    .collect(),
            ),
            (b"FLUSH", _) => {
                self.scripts.flush();
                ok()
            }
            _ => error("ERR unknown subcommand or wrong number of arguments for 'script'"),
        }
    }
}

fn subscription_reply(kind: &str, channel: Option<&Vec<u8>>, count: usize) -> Reply {
    Frame::Array(vec![
        Frame::BulkString(kind.as_bytes().to_vec()),
        channel.map_or(Frame::Null, |c| Frame::BulkString(c.clone())),
        Frame::Integer(count as i64),
    ])
}

fn write_frame(out: &mut Vec<u8>, frame: &Frame) {
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    // The buffer was sized by the encoder itself: encoding cannot run out of room.
    let _ = encode(&mut out[start..], frame, false);
}
