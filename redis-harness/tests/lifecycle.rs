//! A started Redis answers PING; stopped, it refuses connections; restarted, it answers again on
//! the same address. Runs through Docker by default, or a local redis-server with
//! `REDIS_TEST_LOCAL=1` when Docker cannot be reached.

use std::time::Duration;

use redis_harness::TestRedis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One PING over a raw connection; the reply's first five bytes.
async fn ping(address: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
    let mut reply = [0_u8; 5];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply)).await??;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

#[tokio::test]
async fn start_stop_restart_keeps_the_address() {
    let mut redis = TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let address = redis.address();

    assert_eq!(ping(&address).await.expect("PING after start"), "+PONG");

    redis.stop().await.expect("stop");
    assert!(
        ping(&address).await.is_err(),
        "a stopped Redis must not answer on {address}"
    );

    redis.restart().await.expect("restart");
    assert_eq!(redis.address(), address, "restart keeps the address");
    assert_eq!(ping(&address).await.expect("PING after restart"), "+PONG");
}

#[tokio::test]
async fn two_servers_have_different_addresses() {
    let first = TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let second = TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(first.address(), second.address());
    assert_eq!(ping(&first.address()).await.expect("PING first"), "+PONG");
    assert_eq!(ping(&second.address()).await.expect("PING second"), "+PONG");
}
