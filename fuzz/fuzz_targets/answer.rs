//! Any bytes as any route's gRPC answer, written as JSON by the streaming writer
//! (`transcode::Answer`): JSON or an error, never a panic. What it writes must parse as JSON and,
//! when prost-reflect (the reference, as in `gateway/tests/transcode_oracle.rs`) reads the same
//! bytes, equal its JSON. Input: one byte choosing the route, then the answer's bytes.
#![no_main]

use std::sync::OnceLock;

use gateway::{app::builtin_descriptors, routing::RouteTable};
use libfuzzer_sys::fuzz_target;
use prost_reflect::{DynamicMessage, SerializeOptions};

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::from_pool(&builtin_descriptors(), &[]).expect("routes"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, wire)) = data.split_first() else {
        return;
    };
    let routes = table().routes();
    let route = &routes[usize::from(choice) % routes.len()];
    let Ok(json) = route.answer.to_json(wire) else {
        return;
    };
    let written: serde_json::Value =
        serde_json::from_slice(&json).expect("the writer's output is JSON");
    // The route's whole output type (a response_body route writes one field of it).
    if route.response_body.is_some() {
        return;
    }
    let Ok(message) = DynamicMessage::decode(route.grpc_method.output(), wire) else {
        return;
    };
    let mut text = Vec::new();
    let options = SerializeOptions::new().skip_default_fields(false);
    if message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut text), &options)
        .is_ok()
    {
        let reference: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
        assert!(
            agree(&written, &reference),
            "the writer and prost-reflect disagree:\n{written}\n{reference}"
        );
    }
});

/// Equal, but for the one deliberate difference: a float wrapper holding NaN or an infinity is
/// the string the JSON mapping says, where prost-reflect writes null.
fn agree(written: &serde_json::Value, reference: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (written, reference) {
        (Value::String(s), Value::Null) => matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity"),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| agree(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| agree(a, b)))
        }
        _ => written == reference,
    }
}
