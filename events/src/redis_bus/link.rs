//! A link to one Redis through the [`Net`] seam: dialling bounded by a connect timeout, and one
//! multiplexed command connection that is dialled on first use and again after it fails. The
//! bus runs its scripts through it; so does anything else that shares the bus's Redis (the
//! gateway's shared rate limits).

use std::{future::Future, time::Duration};

use futures::future::BoxFuture;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, aio::MultiplexedConnection};
use seams::Net;

/// Dials one Redis and keeps a command connection to it.
pub struct RedisLink<N> {
    net: N,
    address: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    info: RedisConnectionInfo,
    /// The command connection, dialled on first use and again after it fails.
    commands: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl<N> std::fmt::Debug for RedisLink<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl<N: Net> RedisLink<N> {
    /// A link to `address` (`host:port`); nothing is dialled until first use. Every command,
    /// including dialling when needed, is bounded by `command_timeout`.
    pub fn new(
        net: N,
        address: impl Into<String>,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Self {
        Self {
            net,
            address: address.into(),
            connect_timeout,
            command_timeout,
            info: RedisConnectionInfo::default().set_skip_set_lib_name(),
            commands: tokio::sync::Mutex::new(None),
        }
    }

    /// The address dialled.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Dials Redis and runs `handshake` on the stream (e.g. to make a pub/sub connection), both
    /// within the connect timeout.
    pub async fn dial<T, F, Fut>(&self, handshake: F) -> Result<T, String>
    where
        F: FnOnce(N::Stream, RedisConnectionInfo) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let connect = async {
            let stream = self
                .net
                .connect(&self.address)
                .await
                .map_err(|error| format!("connect to {}: {error}", self.address))?;
            handshake(stream, self.info.clone())
                .await
                .map_err(|error| format!("handshake with {}: {error}", self.address))
        };
        tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| format!("connect to {}: timed out", self.address))?
    }

    /// The command connection, dialled if there is none (then `true`: fresh).
    async fn command_connection(&self) -> Result<(MultiplexedConnection, bool), String> {
        let mut slot = self.commands.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok((connection.clone(), false));
        }
        // Explicit rather than redis-rs's 500 ms default: one bound on commands, ours.
        let connection_config =
            AsyncConnectionConfig::new().set_response_timeout(Some(self.command_timeout));
        let (connection, driver) = self
            .dial(|stream, info| async move {
                // The driver is `'static`, but its opaque type names `info`'s lifetime: box it.
                let (connection, driver) =
                    MultiplexedConnection::new_with_config(&info, stream, connection_config)
                        .await?;
                let driver: BoxFuture<'static, ()> = Box::pin(driver);
                Ok((connection, driver))
            })
            .await?;
        tokio::spawn(driver);
        *slot = Some(connection.clone());
        Ok((connection, true))
    }

    /// Makes sure the command connection is up and `script` is loaded (`SCRIPT LOAD`), within
    /// `within`: dialling and loading are what make a first [`RedisLink::run_script`] slow (a
    /// dial, then `EVALSHA`, `NOSCRIPT`, `SCRIPT LOAD` and `EVALSHA` again), so a user whose
    /// calls have a tight bound prepares the link ahead of them.
    pub async fn prepare(&self, script: &redis::Script, within: Duration) -> Result<(), String> {
        let attempt = async {
            let (mut connection, _) = self.command_connection().await?;
            script
                .load_async(&mut connection)
                .await
                .map(drop)
                .map_err(|error| format!("redis: {error}"))
        };
        tokio::time::timeout(within, attempt)
            .await
            .map_err(|_| format!("redis: no answer within {} ms", within.as_millis()))?
    }

    /// Runs one script invocation on the command connection, bounded by the command timeout.
    /// A failed connection is dropped so the next call dials again.
    pub async fn run_script<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let attempt = async {
            // A cached connection may have died since its last use (Redis restarted): then
            // dial once more within the same deadline rather than fail the caller.
            let mut retry = true;
            loop {
                let (mut connection, fresh) = self.command_connection().await?;
                match invocation.invoke_async::<T>(&mut connection).await {
                    Ok(value) => return Ok(value),
                    Err(error) => {
                        let broken = error.is_io_error()
                            || error.is_connection_dropped()
                            || error.is_unrecoverable_error()
                            || error.is_timeout();
                        if broken {
                            self.commands.lock().await.take();
                        }
                        if broken && !fresh && retry {
                            retry = false;
                            continue;
                        }
                        return Err(format!("redis: {error}"));
                    }
                }
            }
        };
        match tokio::time::timeout(self.command_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may be silently dead: dial afresh next time.
                if let Ok(mut slot) = self.commands.try_lock() {
                    slot.take();
                }
                Err(format!(
                    "redis: no answer within {} ms",
                    self.command_timeout.as_millis()
                ))
            }
        }
    }
}
