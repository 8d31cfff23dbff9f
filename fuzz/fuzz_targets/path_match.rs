//! Route lookup on any path, with every method: an answer, never a panic.
#![no_main]

use std::sync::OnceLock;

use gateway::{app::builtin_descriptors, routing::RouteTable};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::from_pool(&builtin_descriptors(), &[]).expect("routes"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    for method in [
        http::Method::GET,
        http::Method::POST,
        http::Method::PATCH,
        http::Method::DELETE,
    ] {
        let _ = table().lookup(&method, path);
    }
});
