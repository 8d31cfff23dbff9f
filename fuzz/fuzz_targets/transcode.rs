//! JSON and query transcoding of any input into any route's request: a message or a
//! `TranscodeError`, never a panic. Input: one byte choosing the route, then the query string,
//! a NUL, and the body.
#![no_main]

use std::sync::OnceLock;

use gateway::{app::builtin_descriptors, routing::RouteTable, transcode};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::from_pool(&builtin_descriptors(), &[]).expect("routes"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let routes = table().routes();
    let route = &routes[usize::from(choice) % routes.len()];
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (std::str::from_utf8(&rest[..at]).ok(), &rest[at + 1..]),
        None => (None, rest),
    };
    if let Ok(message) = transcode::build_request(route, &[], query, body) {
        // What the gateway accepted must also be encodable for the backend.
        let _ = prost::Message::encode_to_vec(&message);
    }
});
