//! Watches one of the gateway's WebSocket endpoints and prints every frame on a line of its own:
//! the README's live-update demo, with nothing to install beyond cargo.
//!
//! ```sh
//! export TOKEN=...    # printed by `cargo run -p dev-stack`
//! cargo run -p dev-stack --bin watch                        # /ws/simulation/s-2
//! cargo run -p dev-stack --bin watch -- /ws/notifications
//! cargo run -p dev-stack --bin watch -- '/ws/simulation/s-2?since=64&epoch=...'
//! ```
//!
//! It ends when the gateway closes the connection (printing the close code and reason), after
//! `--frames` frames, or on Ctrl-C. A refused handshake prints the gateway's status and error
//! body and exits with 1.

use std::process::ExitCode;

use clap::Parser;
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest as _};

/// Prints the frames of a gateway WebSocket endpoint, one per line.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The endpoint, with any query parameters (docs/protocol.md).
    #[arg(default_value = "/ws/simulation/s-2")]
    path: String,
    /// The gateway's WebSocket base URL.
    #[arg(long, default_value = "ws://127.0.0.1:8001")]
    url: String,
    /// The access token (the dev stack prints one).
    #[arg(long, env = "TOKEN", hide_env_values = true)]
    token: String,
    /// Stop after this many frames (0: until the connection closes or Ctrl-C).
    #[arg(long, default_value_t = 0)]
    frames: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match watch(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("watch: {message}");
            ExitCode::from(1)
        }
    }
}

async fn watch(args: &Args) -> Result<(), String> {
    let url = format!("{}{}", args.url.trim_end_matches('/'), args.path);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|error| format!("{url}: {error}"))?;
    let authorization = format!("Bearer {}", args.token)
        .parse()
        .map_err(|_| "the token is not a valid header value".to_owned())?;
    request.headers_mut().insert("authorization", authorization);
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            return Err(format!(
                "the gateway refused the connection: {} {}",
                response.status(),
                String::from_utf8_lossy(body)
            ));
        }
        Err(error) => return Err(format!("cannot connect to {url}: {error}")),
    };
    let mut printed = 0;
    loop {
        let message = tokio::select! {
            message = socket.next() => message,
            _ = tokio::signal::ctrl_c() => {
                let _ = socket.send(Message::Close(None)).await;
                return Ok(());
            }
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                println!("{text}");
                printed += 1;
                if printed == args.frames {
                    let _ = socket.send(Message::Close(None)).await;
                    return Ok(());
                }
            }
            Some(Ok(Message::Close(frame))) => {
                match frame {
                    Some(frame) => {
                        eprintln!("closed by the gateway: {} {}", frame.code, frame.reason)
                    }
                    None => eprintln!("closed by the gateway"),
                }
                return Ok(());
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(format!("connection lost: {error}")),
            None => return Err("connection ended without a close frame".to_owned()),
        }
    }
}
