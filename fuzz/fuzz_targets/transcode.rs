//! A request's JSON body and query string, transcoded into any route's request: wire bytes or a
//! `TranscodeError`, never a panic. The bytes must decode as the route's request type, and the
//! body alone, encoded as the whole request message, must agree with prost-reflect (the oracle
//! the gateway used before): both refuse it, or both read the same message. The one deliberate
//! difference: a key given twice in one object, which prost-reflect takes the last of and the
//! gateway refuses. Input: one byte choosing the route, then the query string, a NUL, the body.
#![no_main]

use std::sync::OnceLock;

use gateway::{app::builtin_descriptors, routing::RouteTable, transcode};
use libfuzzer_sys::fuzz_target;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::from_pool(&builtin_descriptors(), &[]).expect("routes"))
}

/// A message as JSON text with defaults, to compare two messages (NaN included).
fn shown(message: &DynamicMessage) -> String {
    let mut text = Vec::new();
    let options = SerializeOptions::new().skip_default_fields(false);
    message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut text), &options)
        .expect("a decoded message serialises");
    String::from_utf8(text).expect("JSON is UTF-8")
}

fn oracle(input: &MessageDescriptor, body: &[u8]) -> Option<DynamicMessage> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let message =
        DynamicMessage::deserialize_with_options(input.clone(), &mut deserializer, &options)
            .ok()?;
    deserializer.end().ok()?;
    Some(message)
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
    let input = route.input();
    if let Ok(wire) = transcode::build_request(&route.request, &[], query, body) {
        DynamicMessage::decode(input.clone(), wire.as_slice())
            .expect("what the gateway accepted is a valid encoding of the request");
    }
    let ours = route.request.from_json(body);
    match (oracle(&input, body), ours) {
        (Some(reference), Ok(wire)) => {
            let decoded = DynamicMessage::decode(input, wire.as_slice()).expect("valid encoding");
            assert_eq!(
                shown(&decoded),
                shown(&reference),
                "the body read differently"
            );
        }
        (None, Err(_)) => {}
        (Some(_), Err(error)) => assert!(
            error.to_string().contains("given more than once"),
            "the oracle read the body, the gateway refused it: {error}"
        ),
        (None, Ok(_)) => panic!("the oracle refused the body, the gateway read it"),
    }
});
