//! The streaming transcoders against an oracle, `prost-reflect`, which is what the gateway used
//! before: answers (`transcode::Answer`, wire bytes → JSON with no message built), which
//! prost-reflect decodes into a `DynamicMessage` and serialises with defaults; and requests
//! (`transcode::RequestPlan`, JSON → wire bytes), which prost-reflect deserialises, compared by
//! the message they encode, on JSON as clients write it, on JSON mutated into anything, and
//! round trips through both directions. Random messages of every message type
//! of the project's descriptors and of a test-only `.proto` with every field kind and well-known
//! type (`tests/protos/oracle/every_kind.proto`) must give the same JSON, compared parsed.
//! The wire bytes are varied the ways a backend may legally send them: fields out of order,
//! lists unpacked, unknown fields, a message sent in two parts that merge.

use std::sync::{Arc, OnceLock};

use gateway::{
    app::builtin_descriptors,
    transcode::{Answer, BodyMapping, Plans, RequestPlan},
};
use proptest::prelude::*;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, SerializeOptions, Value,
};
use rand::{Rng, SeedableRng, rngs::SmallRng};

mod support;

fn oracle_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| support::dynamic::compile("oracle/every_kind.proto"))
}

fn project_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(builtin_descriptors)
}

fn plans(pool: &DescriptorPool) -> Arc<Plans> {
    static ORACLE: OnceLock<Arc<Plans>> = OnceLock::new();
    static PROJECT: OnceLock<Arc<Plans>> = OnceLock::new();
    let cell = if std::ptr::eq(pool, oracle_pool()) {
        &ORACLE
    } else {
        &PROJECT
    };
    cell.get_or_init(|| Arc::new(Plans::compile(pool))).clone()
}

/// What prost-reflect makes of `wire` as a `message`, with defaults: the oracle. Written as text
/// and parsed, as the gateway wrote it (a `serde_json::Value` serializer would widen floats).
fn oracle_json(message: &MessageDescriptor, wire: &[u8]) -> Result<serde_json::Value, String> {
    let decoded = DynamicMessage::decode(message.clone(), wire).map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    decoded
        .serialize_with_options(
            &mut serde_json::Serializer::new(&mut text),
            &SerializeOptions::new().skip_default_fields(false),
        )
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&text).map_err(|e| e.to_string())
}

/// What the streaming writer makes of the same bytes.
fn streamed_json(
    pool: &DescriptorPool,
    message: &MessageDescriptor,
    wire: &[u8],
) -> Result<serde_json::Value, String> {
    let answer = Answer::new(&plans(pool), message, None);
    let json = answer.to_json(wire).map_err(|e| e.to_string())?;
    serde_json::from_slice(&json)
        .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&json)))
}

/// Generates random messages of any type of a pool, within what the JSON mapping can write
/// (timestamps and durations in range, field masks that round-trip, finite `Value` numbers, `Any`
/// of known types).
struct Generator {
    rng: SmallRng,
    depth: u32,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            depth: 0,
        }
    }

    fn message(&mut self, descriptor: &MessageDescriptor) -> DynamicMessage {
        let mut message = DynamicMessage::new(descriptor.clone());
        if let Some(special) = self.well_known(descriptor) {
            return special;
        }
        self.depth += 1;
        for field in descriptor.fields() {
            if !self.rng.random_bool(0.6) {
                continue;
            }
            if self.depth > 3 && matches!(field.kind(), Kind::Message(_)) {
                continue;
            }
            let value = self.field_value(&field);
            message.set_field(&field, value);
        }
        self.depth -= 1;
        message
    }

    fn field_value(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("a map field's kind is its entry")
            };
            let key_field = entry.map_entry_key_field();
            let value_field = entry.map_entry_value_field();
            let count = self.rng.random_range(0..4);
            let map = (0..count)
                .map(|_| {
                    let key = match self.single(&key_field.kind()) {
                        Value::Bool(v) => MapKey::Bool(v),
                        Value::I32(v) => MapKey::I32(v),
                        Value::I64(v) => MapKey::I64(v),
                        Value::U32(v) => MapKey::U32(v),
                        Value::U64(v) => MapKey::U64(v),
                        Value::String(v) => MapKey::String(v),
                        other => unreachable!("not a map key: {other:?}"),
                    };
                    (key, self.single(&value_field.kind()))
                })
                .collect();
            Value::Map(map)
        } else if field.is_list() {
            let count = self.rng.random_range(0..4);
            Value::List((0..count).map(|_| self.single(&field.kind())).collect())
        } else {
            self.single(&field.kind())
        }
    }

    fn single(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double => Value::F64(self.double()),
            Kind::Float => Value::F32(self.double() as f32),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(self.integer() as i32),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(self.integer()),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(self.integer() as u32),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(self.integer() as u64),
            Kind::Bool => Value::Bool(self.rng.random()),
            Kind::String => Value::String(self.text()),
            Kind::Bytes => {
                let len = self.rng.random_range(0..12);
                Value::Bytes((0..len).map(|_| self.rng.random::<u8>()).collect())
            }
            Kind::Enum(descriptor) => {
                let values: Vec<i32> = descriptor.values().map(|v| v.number()).collect();
                // Now and then a number the enum does not name (an open enum keeps it).
                if self.rng.random_bool(0.15) {
                    Value::EnumNumber(self.rng.random_range(-5..50))
                } else {
                    Value::EnumNumber(values[self.rng.random_range(0..values.len())])
                }
            }
            Kind::Message(descriptor) => Value::Message(self.message(descriptor)),
        }
    }

    /// Integers spread over every size, edges included.
    fn integer(&mut self) -> i64 {
        match self.rng.random_range(0..6) {
            0 => 0,
            1 => self.rng.random_range(-3..300),
            2 => i64::MIN,
            3 => i64::MAX,
            4 => i64::from(self.rng.random::<i32>()),
            _ => self.rng.random(),
        }
    }

    fn double(&mut self) -> f64 {
        match self.rng.random_range(0..10) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => f64::MIN_POSITIVE,
            5 => self.rng.random_range(-1e6..1e6),
            6 => f64::from_bits(self.rng.random()),
            _ => f64::from(self.rng.random_range(-1000..1000)) / 8.0,
        }
    }

    fn finite(&mut self) -> f64 {
        let value = self.double();
        if value.is_finite() { value } else { 1.5 }
    }

    fn text(&mut self) -> String {
        let choices = [
            "", "a", "é", "日本", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", "/", "💡",
            "\u{2028}", "x_y", " ",
        ];
        let len = self.rng.random_range(0..5);
        (0..len)
            .map(|_| choices[self.rng.random_range(0..choices.len())])
            .collect()
    }

    /// The well-known types whose JSON form limits what they may hold.
    fn well_known(&mut self, descriptor: &MessageDescriptor) -> Option<DynamicMessage> {
        let encoded = match descriptor.full_name() {
            "google.protobuf.Timestamp" => prost_types::Timestamp {
                seconds: self.rng.random_range(-62_135_596_800..=253_402_300_799),
                nanos: self.nanos(),
            }
            .encode_to_vec(),
            "google.protobuf.Duration" => {
                let seconds: i64 = self.rng.random_range(-315_576_000_000..=315_576_000_000);
                let nanos = self.nanos();
                let nanos = if seconds < 0 { -nanos } else { nanos };
                prost_types::Duration { seconds, nanos }.encode_to_vec()
            }
            "google.protobuf.FieldMask" => {
                let words = ["a", "b_c", "foo_bar.baz", "x1", "one.two_three"];
                let count = self.rng.random_range(0..3);
                let paths = (0..count)
                    .map(|_| words[self.rng.random_range(0..words.len())].to_owned())
                    .collect();
                prost_types::FieldMask { paths }.encode_to_vec()
            }
            "google.protobuf.Value" => self.json_value(0).encode_to_vec(),
            "google.protobuf.Struct" => self.json_struct(0).encode_to_vec(),
            "google.protobuf.ListValue" => self.json_list(0).encode_to_vec(),
            "google.protobuf.DoubleValue" => self.finite().encode_to_vec(),
            // Finite once narrowed too (prost-reflect writes a non-finite wrapper as null; see
            // float_wrappers_write_non_finite_values_as_strings).
            "google.protobuf.FloatValue" => {
                let value = self.finite() as f32;
                (if value.is_finite() { value } else { 2.5 }).encode_to_vec()
            }
            "google.protobuf.Any" => {
                // A known message, or a well-known type (written under "value").
                let pool = descriptor.parent_pool();
                let candidates = [
                    "oracle.v1.Scalars",
                    "google.protobuf.Timestamp",
                    "oracle.v1.Names",
                ];
                let name = candidates[self.rng.random_range(0..candidates.len())];
                let inner = pool.get_message_by_name(name)?;
                let payload = if self.depth > 2 {
                    DynamicMessage::new(inner)
                } else {
                    self.depth += 1;
                    let payload = self.message(&inner);
                    self.depth -= 1;
                    payload
                };
                prost_types::Any {
                    type_url: format!("type.googleapis.com/{name}"),
                    value: payload.encode_to_vec(),
                }
                .encode_to_vec()
            }
            _ => return None,
        };
        Some(DynamicMessage::decode(descriptor.clone(), encoded.as_slice()).expect("valid"))
    }

    fn nanos(&mut self) -> i32 {
        match self.rng.random_range(0..4) {
            0 => 0,
            1 => self.rng.random_range(0..1000) * 1_000_000,
            2 => self.rng.random_range(0..1_000_000) * 1_000,
            _ => self.rng.random_range(0..1_000_000_000),
        }
    }

    fn json_value(&mut self, depth: u32) -> prost_types::Value {
        use prost_types::value::Kind as K;
        let kind = match self.rng.random_range(0..if depth > 2 { 5 } else { 7 }) {
            0 => None,
            1 => Some(K::NullValue(0)),
            2 => Some(K::NumberValue(self.finite())),
            3 => Some(K::StringValue(self.text())),
            4 => Some(K::BoolValue(self.rng.random())),
            5 => Some(K::StructValue(self.json_struct(depth + 1))),
            _ => Some(K::ListValue(self.json_list(depth + 1))),
        };
        prost_types::Value { kind }
    }

    fn json_struct(&mut self, depth: u32) -> prost_types::Struct {
        let count = self.rng.random_range(0..3);
        let fields = (0..count)
            .map(|_| (self.text(), self.json_value(depth + 1)))
            .collect();
        prost_types::Struct { fields }
    }

    fn json_list(&mut self, depth: u32) -> prost_types::ListValue {
        let count = self.rng.random_range(0..3);
        let values = (0..count).map(|_| self.json_value(depth + 1)).collect();
        prost_types::ListValue { values }
    }
}

/// The fields of an encoded message, each with its bytes (tag included).
fn split_fields(wire: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut fields = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let before = rest;
        let key = prost::encoding::decode_varint(&mut rest).expect("a valid key");
        match key & 7 {
            0 => {
                prost::encoding::decode_varint(&mut rest).expect("a varint");
            }
            1 => rest = &rest[8..],
            2 => {
                let len = prost::encoding::decode_varint(&mut rest).expect("a length") as usize;
                rest = &rest[len..];
            }
            5 => rest = &rest[4..],
            other => panic!("wire type {other} in generated bytes"),
        }
        let taken = before.len() - rest.len();
        fields.push(((key >> 3) as u32, before[..taken].to_vec()));
    }
    fields
}

/// The same message sent differently, as a backend may: fields of different numbers reordered
/// (a field's own occurrences keep their order), unknown fields added, or the message split in
/// two parts that merge.
fn vary(wire: &[u8], rng: &mut SmallRng) -> Vec<u8> {
    let mut fields = split_fields(wire);
    match rng.random_range(0..3) {
        0 => {
            // A stable sort on a random rank per field number keeps each number's order.
            let mut ranks = std::collections::HashMap::new();
            for (number, _) in &fields {
                ranks.entry(*number).or_insert_with(|| rng.random::<u32>());
            }
            fields.sort_by_key(|(number, _)| ranks[number]);
        }
        1 => {
            // Field 99,999 (no message here has it) as a varint, bytes and a fixed32.
            use prost::encoding::{WireType, encode_key, encode_varint};
            let mut unknown = Vec::new();
            encode_key(99_999, WireType::Varint, &mut unknown);
            encode_varint(300, &mut unknown);
            encode_key(99_999, WireType::LengthDelimited, &mut unknown);
            unknown.extend([2, 1, 2]);
            encode_key(99_999, WireType::ThirtyTwoBit, &mut unknown);
            unknown.extend([1, 2, 3, 4]);
            let at = rng.random_range(0..=fields.len());
            fields.insert(at, (u32::MAX, unknown));
        }
        _ => {}
    }
    fields.into_iter().flat_map(|(_, bytes)| bytes).collect()
}

fn check(
    pool: &DescriptorPool,
    descriptor: &MessageDescriptor,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut generator = Generator::new(seed);
    let message = generator.message(descriptor);
    let wire = message.encode_to_vec();
    let expected = oracle_json(descriptor, &wire).map_err(TestCaseError::fail)?;
    let streamed = streamed_json(pool, descriptor, &wire).map_err(TestCaseError::fail)?;
    prop_assert_eq!(
        &streamed,
        &expected,
        "{} from {:?}",
        descriptor.full_name(),
        wire
    );

    // The same message as a backend may send it.
    let varied = vary(&wire, &mut generator.rng);
    let expected = oracle_json(descriptor, &varied).map_err(TestCaseError::fail)?;
    let streamed = streamed_json(pool, descriptor, &varied).map_err(TestCaseError::fail)?;
    prop_assert_eq!(
        &streamed,
        &expected,
        "{} varied {:?}",
        descriptor.full_name(),
        varied
    );

    // Two messages sent one after the other merge: later scalars win, lists append, messages
    // merge, the oneof member set last wins. (An Any may then pair one part's type with the
    // other's payload: what the oracle cannot read, the writer must refuse too.)
    let second = generator.message(descriptor).encode_to_vec();
    let merged = [wire.as_slice(), second.as_slice()].concat();
    let streamed = streamed_json(pool, descriptor, &merged);
    match oracle_json(descriptor, &merged) {
        Ok(expected) => {
            let streamed = streamed.map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                &streamed,
                &expected,
                "{} merged {:?}",
                descriptor.full_name(),
                merged
            );
        }
        Err(error) => prop_assert!(
            streamed.is_err(),
            "{} merged {:?}: the oracle refused it ({}), the writer wrote {:?}",
            descriptor.full_name(),
            merged,
            error,
            streamed
        ),
    }
    Ok(())
}

/// prost-reflect's JSON of `message`, written with the options a client may use: JSON or
/// `.proto` names, enums by name or number, defaults or not, 64-bit integers quoted or not.
fn client_json(message: &DynamicMessage, rng: &mut SmallRng) -> Vec<u8> {
    let options = SerializeOptions::new()
        .skip_default_fields(rng.random())
        .use_proto_field_name(rng.random())
        .use_enum_numbers(rng.random())
        .stringify_64_bit_integers(rng.random());
    let mut text = Vec::new();
    message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut text), &options)
        .expect("prost-reflect writes every generated message");
    text
}

/// What prost-reflect reads from a request's JSON (unknown fields refused, as the gateway
/// refuses them), encoded: the request oracle.
fn oracle_wire(message: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let decoded =
        DynamicMessage::deserialize_with_options(message.clone(), &mut deserializer, &options)
            .map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(decoded.encode_to_vec())
}

/// What the streaming request encoder makes of the same JSON.
fn encoded(
    pool: &DescriptorPool,
    message: &MessageDescriptor,
    json: &[u8],
) -> Result<Vec<u8>, String> {
    RequestPlan::new(&plans(pool), message, BodyMapping::Whole, Vec::new())
        .from_json(json)
        .map_err(|e| e.to_string())
}

fn check_request(
    pool: &DescriptorPool,
    descriptor: &MessageDescriptor,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut generator = Generator::new(seed);
    let message = generator.message(descriptor);
    let expected =
        oracle_json(descriptor, &message.encode_to_vec()).map_err(TestCaseError::fail)?;
    let json = client_json(&message, &mut generator.rng);
    let shown = String::from_utf8_lossy(&json).into_owned();

    // JSON as a client writes it encodes the message it came from.
    let wire = encoded(pool, descriptor, &json)
        .map_err(|e| TestCaseError::fail(format!("{}: {e}\n{shown}", descriptor.full_name())))?;
    let read_back = oracle_json(descriptor, &wire).map_err(TestCaseError::fail)?;
    prop_assert!(
        read_back == expected,
        "{} from {}: {}",
        descriptor.full_name(),
        shown,
        difference(&read_back, &expected, "")
    );

    // Round trip: the answer writer's JSON of those bytes, encoded again, is the same message.
    let answered = streamed_json(pool, descriptor, &wire).map_err(TestCaseError::fail)?;
    let again = encoded(pool, descriptor, answered.to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("{}: {e}\n{answered}", descriptor.full_name())))?;
    let read_back = oracle_json(descriptor, &again).map_err(TestCaseError::fail)?;
    prop_assert!(
        read_back == expected,
        "{} round trip of {}: {}",
        descriptor.full_name(),
        answered,
        difference(&read_back, &expected, "")
    );

    // JSON mutated into anything: refused by both, or read by both as the same message.
    let mut mutated: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    for _ in 0..generator.rng.random_range(1..4) {
        mutate(&mut mutated, &mut generator.rng);
    }
    let text = mutated.to_string();
    if let Some(difference) = request_disagreement(pool, descriptor, &text) {
        prop_assert!(
            false,
            "{} from {}: {}",
            descriptor.full_name(),
            text,
            difference
        );
    }
    Ok(())
}

/// Where two JSON documents first differ, for failure messages.
fn difference(ours: &serde_json::Value, reference: &serde_json::Value, at: &str) -> String {
    use serde_json::Value as Json;
    match (ours, reference) {
        (Json::Object(a), Json::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) if x == y => {}
                    (Some(x), Some(y)) => return difference(x, y, &format!("{at}.{key}")),
                    (x, y) => return format!("at {at}.{key}: ours {x:?}, the oracle's {y:?}"),
                }
            }
            String::new()
        }
        (Json::Array(a), Json::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| difference(x, y, &format!("{at}[{i}]")))
            .unwrap_or_default(),
        _ => format!("at {at}: ours {ours}, the oracle's {reference}"),
    }
}

/// JSON values at the edges of what fields accept: every type, numbers out of range or given as
/// text, enum and null names, base64 of both alphabets, times, an Any.
fn edge_values() -> Vec<serde_json::Value> {
    use serde_json::{Value as Json, json};
    vec![
        Json::Null,
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e3),
        json!(4294967296u64),
        json!(18446744073709551615u64),
        json!(-9223372036854775808i64),
        json!(3.4e39),
        json!("7"),
        json!("-0"),
        json!("1e2"),
        json!("NaN"),
        json!("-Infinity"),
        json!("inf"),
        json!("AAE="),
        json!("AA-_"),
        json!("not base64!"),
        json!(""),
        json!("FIRST"),
        json!("NULL_VALUE"),
        json!("2024-02-29T12:00:00.5+01:00"),
        json!("1.5s"),
        json!("fooBar,x"),
        json!(true),
        json!([]),
        json!([1, "2", null]),
        json!({}),
        json!({"unknownField": 1}),
        json!({"@type": "type.googleapis.com/oracle.v1.Names", "displayName": "x"}),
        json!({"@type": "type.googleapis.com/google.protobuf.Duration", "value": "-1.5s"}),
        json!({"@type": "oracle.v1.Names"}),
        json!("COLOUR_RED"),
        json!("ALIASED_ONE"),
        json!(2147483648u64),
        json!(-2147483649i64),
        json!(2.5e9),
        json!(-0.0),
        json!(9.3e18),
        json!(1.8446744073709552e19),
        json!(-1e300),
        json!("9223372036854775808"),
        json!("+1"),
        json!(" 1"),
        json!("0x10"),
        json!("1970-01-01T00:00:00Z"),
        json!("0001-01-01T00:00:00Z"),
        json!("10000-01-01T00:00:00Z"),
        json!("-315576000000.999999999s"),
        json!("315576000001s"),
        json!("a_b"),
        json!("\u{1f}日本"),
    ]
}

/// The request encoder and the oracle on one JSON document: both refuse it, or both read the
/// same message. `None` when they agree, else what differs.
fn request_disagreement(
    pool: &DescriptorPool,
    descriptor: &MessageDescriptor,
    text: &str,
) -> Option<String> {
    match (
        oracle_wire(descriptor, text.as_bytes()),
        encoded(pool, descriptor, text.as_bytes()),
    ) {
        (Ok(reference), Ok(ours)) => {
            let reference = oracle_json(descriptor, &reference).ok()?;
            let ours = oracle_json(descriptor, &ours).map_err(|e| e.to_string());
            match ours {
                Ok(ours) if ours == reference => None,
                Ok(ours) => Some(difference(&ours, &reference, "")),
                Err(error) => Some(format!("ours does not decode: {error}")),
            }
        }
        (Err(_), Err(_)) => None,
        // Documented policy (errors.md, "A key given twice is rejected"): a field named both ways
        // is refused, where the oracle keeps one of the two values.
        (Ok(_), Err(ours))
            if ours.to_string().contains("given more than once")
                && serde_json::from_str(text).is_ok_and(|json| names_a_field_both_ways(&json)) =>
        {
            None
        }
        (Ok(_), Err(ours)) => Some(format!("the oracle read it, the encoder refused: {ours}")),
        (Err(reference), Ok(_)) => Some(format!(
            "the oracle refused ({reference}), the encoder read it"
        )),
    }
}

/// Whether some object of `json` has two keys for one field: its proto name and its JSON name
/// (`display_name` and `displayName`), which map to the same lowerCamelCase name.
fn names_a_field_both_ways(json: &serde_json::Value) -> bool {
    use serde_json::Value as Json;
    fn lower_camel(key: &str) -> String {
        let mut camel = String::with_capacity(key.len());
        let mut upper = false;
        for c in key.chars() {
            match c {
                '_' => upper = true,
                c if upper => {
                    camel.extend(c.to_uppercase());
                    upper = false;
                }
                c => camel.push(c),
            }
        }
        camel
    }
    match json {
        Json::Object(object) => {
            let mut names = std::collections::HashSet::new();
            object.keys().any(|key| !names.insert(lower_camel(key)))
                || object.values().any(names_a_field_both_ways)
        }
        Json::Array(items) => items.iter().any(names_a_field_both_ways),
        _ => false,
    }
}

/// Changes one node of a JSON document: a value replaced by one of another type or an edge
/// (null, numbers as strings, fractions, huge numbers, enum-like names), a key added or removed.
fn mutate(json: &mut serde_json::Value, rng: &mut SmallRng) {
    use serde_json::Value as Json;
    let nodes = count_nodes(json);
    let mut target = rng.random_range(0..nodes);
    let node = nth_node(json, &mut target).expect("a node in range");
    let replacements = edge_values();
    match node {
        Json::Object(object) if rng.random_bool(0.3) => {
            if let Some(key) = object.keys().next().cloned().filter(|_| rng.random()) {
                object.remove(&key);
            } else {
                let keys = [
                    "unknown",
                    "display_name",
                    "displayName",
                    "value",
                    "@type",
                    "id",
                ];
                let value = replacements[rng.random_range(0..replacements.len())].clone();
                object.insert(keys[rng.random_range(0..keys.len())].to_owned(), value);
            }
        }
        other => *other = replacements[rng.random_range(0..replacements.len())].clone(),
    }
}

fn count_nodes(json: &serde_json::Value) -> usize {
    1 + match json {
        serde_json::Value::Array(items) => items.iter().map(count_nodes).sum(),
        serde_json::Value::Object(object) => object.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The node `*left` places after `json` in pre-order.
fn nth_node<'j>(
    json: &'j mut serde_json::Value,
    left: &mut usize,
) -> Option<&'j mut serde_json::Value> {
    if *left == 0 {
        return Some(json);
    }
    *left -= 1;
    match json {
        serde_json::Value::Array(items) => items.iter_mut().find_map(|item| nth_node(item, left)),
        serde_json::Value::Object(object) => {
            object.values_mut().find_map(|value| nth_node(value, left))
        }
        _ => None,
    }
}

/// Every message type of a pool that is not a map entry nor one of protobuf's own descriptor
/// types (which use proto2 groups and extensions the gateway's APIs never carry).
fn messages(pool: &DescriptorPool) -> Vec<MessageDescriptor> {
    pool.all_messages()
        .filter(|m| {
            (!m.is_map_entry() && !m.full_name().starts_with("google.protobuf.")) || is_wkt(m)
        })
        .collect()
}

fn is_wkt(message: &MessageDescriptor) -> bool {
    message.full_name().starts_with("google.protobuf.")
        && message.parent_file().name() != "google/protobuf/descriptor.proto"
        && !message.is_map_entry()
}

/// One message type of the pool, chosen by proptest.
fn picked(pool: &DescriptorPool, pick: prop::sample::Index) -> MessageDescriptor {
    let all = messages(pool);
    all[pick.index(all.len())].clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn answers_of_the_every_kind_proto_match_the_oracle(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        check(oracle_pool(), &picked(oracle_pool(), pick), seed)?;
    }

    #[test]
    fn answers_of_the_project_protos_match_the_oracle(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        check(project_pool(), &picked(project_pool(), pick), seed)?;
    }

    #[test]
    fn requests_of_the_every_kind_proto_match_the_oracle(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        check_request(oracle_pool(), &picked(oracle_pool(), pick), seed)?;
    }

    #[test]
    fn requests_of_the_project_protos_match_the_oracle(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        check_request(project_pool(), &picked(project_pool(), pick), seed)?;
    }

    /// Bytes that are not a valid encoding are an error, never a panic; when the oracle reads
    /// them, so does the writer, to the same JSON.
    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_the_oracle_when_read(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        pick in any::<prop::sample::Index>(),
    ) {
        let pool = oracle_pool();
        let all = messages(pool);
        let descriptor = &all[pick.index(all.len())];
        let streamed = streamed_json(pool, descriptor, &bytes);
        if let (Ok(expected), Ok(streamed)) = (oracle_json(descriptor, &bytes), streamed) {
            prop_assert!(agree(&streamed, &expected), "{streamed}\n{expected}");
        }
    }
}

/// Equal, but for the one deliberate difference (see
/// `float_wrappers_write_non_finite_values_as_strings`): arbitrary bytes may hold a float wrapper
/// with NaN or an infinity, which prost-reflect writes as null.
fn agree(written: &serde_json::Value, reference: &serde_json::Value) -> bool {
    use serde_json::Value as Json;
    match (written, reference) {
        (Json::String(s), Json::Null) => matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity"),
        (Json::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| agree(a, b))
        }
        (Json::Object(a), Json::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| agree(a, b)))
        }
        _ => written == reference,
    }
}

/// Every field of every message, given each edge value (as itself, as a list item, as a map
/// value, and map keys of every form): the encoder refuses what the oracle refuses and reads the
/// rest as it does.
#[test]
fn every_field_given_every_edge_value_is_read_as_the_oracle_reads_it() {
    use serde_json::{Value as Json, json};
    let mut disagreements = Vec::new();
    let mut documents = 0;
    for pool in [oracle_pool(), project_pool()] {
        for descriptor in messages(pool) {
            for field in descriptor.fields() {
                let mut values: Vec<Json> = Vec::new();
                for value in edge_values() {
                    values.push(json!([value.clone()]));
                    values.push(json!({ "1": value.clone() }));
                    values.push(json!({ "k": value.clone() }));
                    values.push(value);
                }
                for key in ["1", "-1", "true", "false", "k", "4294967296", "1.0", ""] {
                    values.push(json!({ key: 1 }));
                    values.push(json!({ key: "x" }));
                }
                for name in [field.json_name(), field.name()] {
                    for value in &values {
                        let text = json!({ name: value }).to_string();
                        documents += 1;
                        if let Some(difference) = request_disagreement(pool, &descriptor, &text) {
                            disagreements
                                .push(format!("{}: {text}: {difference}", descriptor.full_name()));
                        }
                    }
                }
            }
        }
    }
    assert!(documents > 10_000, "only {documents} documents tried");
    assert!(
        disagreements.is_empty(),
        "{} of {documents} documents read differently, the first:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(15)].join("\n")
    );
}

#[test]
fn every_message_type_of_both_pools_is_generated() {
    // The properties pick types at random: make sure each is checked at least once here.
    for pool in [oracle_pool(), project_pool()] {
        for descriptor in messages(pool) {
            for seed in 0..8 {
                check(pool, &descriptor, seed).unwrap_or_else(|error| {
                    panic!("{} seed {seed}: {error}", descriptor.full_name())
                });
            }
        }
    }
}

#[test]
fn a_response_body_field_is_answered_alone_with_its_default_when_unset() {
    let pool = oracle_pool();
    let presence = pool.get_message_by_name("oracle.v1.Presence").unwrap();
    let field = presence.get_field_by_name("message").unwrap();
    let answer = Answer::new(&plans(pool), &presence, Some(&field));
    let json: serde_json::Value = serde_json::from_slice(&answer.to_json(&[]).unwrap()).unwrap();
    let expected = oracle_json(&field.kind().as_message().unwrap().clone(), &[]).unwrap();
    assert_eq!(json, expected);

    let mut message = DynamicMessage::new(presence.clone());
    let mut inner = DynamicMessage::new(field.kind().as_message().unwrap().clone());
    inner.set_field_by_name("f_int64", Value::I64(-7));
    message.set_field(&field, Value::Message(inner));
    let json: serde_json::Value =
        serde_json::from_slice(&answer.to_json(&message.encode_to_vec()).unwrap()).unwrap();
    assert_eq!(json["fInt64"], "-7");
    assert_eq!(json["fString"], "");
}

/// Where the writer follows the JSON mapping and prost-reflect does not: a float wrapper holding
/// NaN or an infinity is the string, as for a plain float field, not `null`.
#[test]
fn float_wrappers_write_non_finite_values_as_strings() {
    let pool = oracle_pool();
    let well_known = pool.get_message_by_name("oracle.v1.WellKnown").unwrap();
    let wrapped = |value: f64| {
        let double = value.encode_to_vec(); // DoubleValue
        let float = (value as f32).encode_to_vec(); // FloatValue
        let mut wire = vec![0x42, double.len() as u8];
        wire.extend(double);
        wire.extend([0x4a, float.len() as u8]);
        wire.extend(float);
        streamed_json(pool, &well_known, &wire).unwrap()
    };
    let json = wrapped(f64::NAN);
    assert_eq!(
        (&json["doubleValue"], &json["floatValue"]),
        (&"NaN".into(), &"NaN".into())
    );
    let json = wrapped(f64::NEG_INFINITY);
    assert_eq!(json["doubleValue"], "-Infinity");
    assert_eq!(json["floatValue"], "-Infinity");
}

#[test]
fn malformed_answers_are_errors() {
    let pool = oracle_pool();
    let descriptor = |name: &str| pool.get_message_by_name(name).unwrap();
    let cases: &[(&str, &[u8])] = &[
        ("oracle.v1.Scalars", &[0x72, 0x02, 0xff, 0xfe]), // f_string not UTF-8
        ("oracle.v1.Scalars", &[0x72, 0x05, b'a']),       // length past the end
        ("oracle.v1.Scalars", &[0x08, 0x01]),             // f_double sent as a varint
        ("oracle.v1.Scalars", &[0x18, 0x80]),             // truncated varint
        // A timestamp before year 1.
        (
            "google.protobuf.Timestamp",
            &[
                0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
        ),
        // A Value number that is NaN.
        (
            "google.protobuf.Value",
            &[0x11, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f],
        ),
        // An Any of a type nobody knows.
        ("google.protobuf.Any", &[0x0a, 0x03, b'a', b'/', b'b']),
    ];
    for (name, wire) in cases {
        let result = streamed_json(pool, &descriptor(name), wire);
        assert!(result.is_err(), "{name} {wire:?} was written as {result:?}");
    }
    // Nesting beyond the limit: Everything.child 150 deep.
    let mut wire: Vec<u8> = Vec::new();
    for _ in 0..150 {
        let mut outer = vec![0x3a];
        prost::encoding::encode_varint(wire.len() as u64, &mut outer);
        outer.extend(wire);
        wire = outer;
    }
    assert!(streamed_json(pool, &descriptor("oracle.v1.Everything"), &wire).is_err());
}
