//! Transcoding plans: what the writers need of each message type, compiled once from the
//! descriptors at start-up, so the per-request work reads field numbers and JSON names from flat
//! tables instead of walking reflection types.

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

/// The index of a message's plan in [`Plans`].
pub type MessageId = u32;

/// Every message type of a descriptor pool, compiled.
#[derive(Debug)]
pub struct Plans {
    messages: Vec<MessagePlan>,
    by_name: HashMap<String, MessageId>,
    enums: Vec<EnumPlan>,
}

/// One message type.
#[derive(Debug)]
pub struct MessagePlan {
    /// The fields, by field number.
    pub fields: Vec<FieldPlan>,
    /// Set for the well-known types, which have JSON forms of their own.
    pub well_known: Option<WellKnown>,
    /// Finds a field from its number.
    by_number: FieldIndex,
}

/// Finds a field's position in [`MessagePlan::fields`] from its number.
#[derive(Debug)]
enum FieldIndex {
    /// Numbers up to a small bound: a direct table (`u16::MAX` for no field).
    Dense(Vec<u16>),
    /// Sparse numbers: a binary search over `fields`.
    Sorted,
}

/// One field of a message.
#[derive(Debug)]
pub struct FieldPlan {
    /// The field number.
    pub number: u32,
    /// The field's name in the `.proto` (`created_at`), which JSON input may use.
    pub name: Box<str>,
    /// The field's JSON name (`createdAt`).
    pub json_name: Box<str>,
    /// The field's JSON name written as a JSON string and a colon: `"createdAt":`.
    pub json_key: Box<str>,
    /// The value's type (for a map, the entry message's).
    pub kind: ValueKind,
    /// How many values the field holds.
    pub cardinality: Cardinality,
    /// Whether an unset field is left out of the JSON even when defaults are written
    /// (messages, oneof members, proto3 `optional`).
    pub has_presence: bool,
    /// The oneof the field belongs to, if any.
    pub oneof: Option<u16>,
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    /// One value; the last one on the wire wins (messages merge).
    Single,
    /// A list, packed or not on the wire.
    Repeated,
    /// A map; `kind` is the entry message, whose field 1 is the key and 2 the value.
    Map,
}

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// `double`.
    Double,
    /// `float`.
    Float,
    /// `int32`.
    Int32,
    /// `int64`.
    Int64,
    /// `uint32`.
    Uint32,
    /// `uint64`.
    Uint64,
    /// `sint32`.
    Sint32,
    /// `sint64`.
    Sint64,
    /// `fixed32`.
    Fixed32,
    /// `fixed64`.
    Fixed64,
    /// `sfixed32`.
    Sfixed32,
    /// `sfixed64`.
    Sfixed64,
    /// `bool`.
    Bool,
    /// `string`.
    String,
    /// `bytes`.
    Bytes,
    /// An enum, by its index in [`Plans::enums`].
    Enum(u32),
    /// A message, by its id; groups are messages delimited differently on the wire.
    Message(MessageId),
}

impl ValueKind {
    /// Whether a list of this kind is packed on the wire (numbers, booleans and enums).
    pub fn is_packable(self) -> bool {
        !matches!(self, Self::String | Self::Bytes | Self::Message(_))
    }
}

/// The range of `google.protobuf.Timestamp` in JSON: 0001-01-01T00:00:00Z ..
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// .. 9999-12-31T23:59:59Z.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
/// The range of `google.protobuf.Duration`: ±10,000 years.
pub const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
/// The largest nanosecond part of a Timestamp or Duration.
pub const MAX_NANOS: u32 = 999_999_999;

/// The well-known types whose JSON is not an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKnown {
    /// `google.protobuf.Any`: `{"@type": ..., ...}`.
    Any,
    /// `google.protobuf.Timestamp`: an RFC 3339 string.
    Timestamp,
    /// `google.protobuf.Duration`: `"1.5s"`.
    Duration,
    /// `google.protobuf.FieldMask`: lowerCamel paths joined with commas.
    FieldMask,
    /// `google.protobuf.Struct`: an object.
    Struct,
    /// `google.protobuf.Value`: any JSON value.
    Value,
    /// `google.protobuf.ListValue`: an array.
    ListValue,
    /// `google.protobuf.Empty`: `{}`.
    Empty,
    /// The wrappers (`Int64Value`, `StringValue`, ...): the wrapped value itself.
    Wrapper,
}

impl WellKnown {
    fn of(full_name: &str) -> Option<Self> {
        Some(match full_name {
            "google.protobuf.Any" => Self::Any,
            "google.protobuf.Timestamp" => Self::Timestamp,
            "google.protobuf.Duration" => Self::Duration,
            "google.protobuf.FieldMask" => Self::FieldMask,
            "google.protobuf.Struct" => Self::Struct,
            "google.protobuf.Value" => Self::Value,
            "google.protobuf.ListValue" => Self::ListValue,
            "google.protobuf.Empty" => Self::Empty,
            "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue" => Self::Wrapper,
            _ => return None,
        })
    }
}

/// One enum type: its values' names by number.
#[derive(Debug)]
pub struct EnumPlan {
    /// `(number, name written as a JSON string)`, sorted by number.
    values: Vec<(i32, Box<str>)>,
    /// `(name, number)` of every value, aliases included, sorted by name.
    numbers: Vec<(Box<str>, i32)>,
    /// `google.protobuf.NullValue`, written as `null`.
    pub is_null_value: bool,
}

impl EnumPlan {
    /// The JSON string (quoted) of a value's name, if the number has one.
    pub fn json_name(&self, number: i32) -> Option<&str> {
        self.values
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .map(|at| &*self.values[at].1)
    }

    /// The number of the value named `name` (JSON input names enum values).
    pub fn number_of(&self, name: &str) -> Option<i32> {
        self.numbers
            .binary_search_by(|(known, _)| (**known).cmp(name))
            .ok()
            .map(|at| self.numbers[at].1)
    }
}

impl Plans {
    /// Compiles every message type of the pool.
    pub fn compile(pool: &DescriptorPool) -> Self {
        let by_name: HashMap<String, MessageId> = pool
            .all_messages()
            .enumerate()
            .map(|(at, message)| (message.full_name().to_owned(), id(at)))
            .collect();
        let mut enums = EnumTable::default();
        let messages = pool
            .all_messages()
            .map(|message| compile_message(&message, &by_name, &mut enums))
            .collect();
        Self {
            messages,
            by_name,
            enums: enums.plans,
        }
    }

    /// A message type's plan.
    pub fn message(&self, id: MessageId) -> &MessagePlan {
        &self.messages[id as usize]
    }

    /// A message type's id, by its full name.
    pub fn id_of(&self, full_name: &str) -> Option<MessageId> {
        self.by_name.get(full_name).copied()
    }

    /// An enum type's plan.
    pub fn enumeration(&self, index: u32) -> &EnumPlan {
        &self.enums[index as usize]
    }
}

impl MessagePlan {
    /// The field with this number.
    pub fn field(&self, number: u32) -> Option<&FieldPlan> {
        self.position(number).map(|at| &self.fields[at])
    }

    /// The field a JSON key names: by JSON name first, then by `.proto` name.
    pub fn field_named(&self, key: &str) -> Option<&FieldPlan> {
        self.fields
            .iter()
            .find(|field| &*field.json_name == key)
            .or_else(|| self.fields.iter().find(|field| &*field.name == key))
    }

    /// The position in `fields` of the field with this number.
    pub fn position(&self, number: u32) -> Option<usize> {
        match &self.by_number {
            FieldIndex::Dense(table) => table
                .get(number as usize)
                .filter(|at| **at != u16::MAX)
                .map(|at| usize::from(*at)),
            FieldIndex::Sorted => self
                .fields
                .binary_search_by_key(&number, |field| field.number)
                .ok(),
        }
    }
}

/// Field numbers up to this get a direct lookup table.
const DENSE_NUMBERS: u32 = 64;

fn id(at: usize) -> MessageId {
    MessageId::try_from(at).expect("fewer than 2^32 message types")
}

#[derive(Default)]
struct EnumTable {
    plans: Vec<EnumPlan>,
    by_name: HashMap<String, u32>,
}

fn compile_message(
    message: &MessageDescriptor,
    by_name: &HashMap<String, MessageId>,
    enums: &mut EnumTable,
) -> MessagePlan {
    let oneofs: Vec<String> = message
        .oneofs()
        .map(|oneof| oneof.full_name().to_owned())
        .collect();
    let mut fields: Vec<FieldPlan> = message
        .fields()
        .map(|field| compile_field(&field, &oneofs, by_name, enums))
        .collect();
    fields.sort_by_key(|field| field.number);
    let highest = fields.last().map_or(0, |field| field.number);
    let by_number = if highest <= DENSE_NUMBERS {
        let mut table = vec![u16::MAX; highest as usize + 1];
        for (at, field) in fields.iter().enumerate() {
            table[field.number as usize] = u16::try_from(at).expect("few fields");
        }
        FieldIndex::Dense(table)
    } else {
        FieldIndex::Sorted
    };
    MessagePlan {
        fields,
        well_known: WellKnown::of(message.full_name()),
        by_number,
    }
}

fn compile_field(
    field: &FieldDescriptor,
    oneofs: &[String],
    by_name: &HashMap<String, MessageId>,
    enums: &mut EnumTable,
) -> FieldPlan {
    let cardinality = if field.is_map() {
        Cardinality::Map
    } else if field.is_list() {
        Cardinality::Repeated
    } else {
        Cardinality::Single
    };
    let oneof = field.containing_oneof().and_then(|oneof| {
        oneofs
            .iter()
            .position(|name| name == oneof.full_name())
            .and_then(|at| u16::try_from(at).ok())
    });
    FieldPlan {
        number: field.number(),
        name: field.name().into(),
        json_name: field.json_name().into(),
        json_key: format!("{}:", serde_json::Value::from(field.json_name())).into(),
        kind: value_kind(&field.kind(), by_name, enums),
        cardinality,
        has_presence: field.supports_presence(),
        oneof,
    }
}

fn value_kind(
    kind: &Kind,
    by_name: &HashMap<String, MessageId>,
    enums: &mut EnumTable,
) -> ValueKind {
    match kind {
        Kind::Double => ValueKind::Double,
        Kind::Float => ValueKind::Float,
        Kind::Int32 => ValueKind::Int32,
        Kind::Int64 => ValueKind::Int64,
        Kind::Uint32 => ValueKind::Uint32,
        Kind::Uint64 => ValueKind::Uint64,
        Kind::Sint32 => ValueKind::Sint32,
        Kind::Sint64 => ValueKind::Sint64,
        Kind::Fixed32 => ValueKind::Fixed32,
        Kind::Fixed64 => ValueKind::Fixed64,
        Kind::Sfixed32 => ValueKind::Sfixed32,
        Kind::Sfixed64 => ValueKind::Sfixed64,
        Kind::Bool => ValueKind::Bool,
        Kind::String => ValueKind::String,
        Kind::Bytes => ValueKind::Bytes,
        Kind::Message(message) => ValueKind::Message(by_name[message.full_name()]),
        Kind::Enum(descriptor) => {
            let name = descriptor.full_name();
            if let Some(index) = enums.by_name.get(name) {
                return ValueKind::Enum(*index);
            }
            let mut values: Vec<(i32, Box<str>)> = Vec::new();
            for value in descriptor.values() {
                let number = value.number();
                // An aliased number (`allow_alias`) is written with the name the descriptor
                // gives for it, as prost-reflect does.
                if values.iter().any(|(seen, _)| *seen == number) {
                    continue;
                }
                let name = descriptor.get_value(number).map_or(value, |named| named);
                let quoted = serde_json::Value::from(name.name()).to_string();
                values.push((number, quoted.into()));
            }
            values.sort_by_key(|(number, _)| *number);
            let mut numbers: Vec<(Box<str>, i32)> = descriptor
                .values()
                .map(|value| (value.name().into(), value.number()))
                .collect();
            numbers.sort();
            let index = u32::try_from(enums.plans.len()).expect("fewer than 2^32 enums");
            enums.plans.push(EnumPlan {
                values,
                numbers,
                is_null_value: name == "google.protobuf.NullValue",
            });
            enums.by_name.insert(name.to_owned(), index);
            ValueKind::Enum(index)
        }
    }
}
