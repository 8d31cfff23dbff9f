//! The WebSocket client frame parser on any text: a frame or a `FrameError`, never a panic.
#![no_main]

use gateway::realtime::hub::protocol::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientFrame::parse(text);
    }
});
