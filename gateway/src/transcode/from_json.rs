//! A request's JSON written straight into protobuf wire bytes: the JSON is read once, token by
//! token, and each value is encoded as its field's plan says, with no message built in between.
//!
//! What is accepted is the proto3 JSON mapping as `prost-reflect` reads it: fields by JSON name
//! or `.proto` name; `null` for "not set" (and for `google.protobuf.Value`'s and `NullValue`'s
//! null); integers as numbers (an integral float too) or decimal strings; enums by name or
//! number; bytes as base64 in either alphabet, padded or not; floats as numbers or `"NaN"`,
//! `"Infinity"`, `"-Infinity"`; the well-known types in their own forms. Refused, as 400
//! `invalid_json`: a key the message does not have, two members of one oneof, an enum name the
//! enum does not have, a value of the wrong type or out of range. One deliberate difference from
//! `prost-reflect`, which keeps the last: a key given twice in one object is refused, since it is
//! a client's mistake the gateway cannot resolve for it (Go's `protojson` refuses it too).
//!
//! The encoding is the one a protobuf encoder writes: fields without presence left out at their
//! zero value, lists of numbers packed, nested messages length-prefixed once their size is known.

use std::{fmt, str::FromStr};

use base64::Engine as _;
use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use super::plan::{
    Cardinality, FieldPlan, MAX_DURATION_SECONDS, MAX_NANOS, MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS, MessageId, Plans, ValueKind, WellKnown,
};

/// Writes the JSON document `json` as the fields of message `id` at the end of `out`.
pub fn write_message(
    plans: &Plans,
    id: MessageId,
    json: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    Message { plans, id, out }.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// Writes the JSON document `json` as the value of `field` (tag included) at the end of `out`;
/// `null` leaves the field unset.
pub fn write_field(
    plans: &Plans,
    field: &FieldPlan,
    json: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    FieldValue { plans, field, out }.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// Decodes base64 as the JSON mapping allows: the standard or the URL-safe alphabet, with or
/// without padding.
pub fn base64_bytes(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    let engine = if text.contains(['-', '_']) {
        URL_SAFE
    } else {
        STANDARD
    };
    engine
        .decode(text)
        .map_err(|error| format!("invalid base64: {error}"))
}

/// A scalar as it goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 5.
    Fixed32(u32),
    /// Wire type 1.
    Fixed64(u64),
}

impl Scalar {
    /// Whether this is the zero value, which a field without presence leaves out. `-0.0` is not:
    /// its bits are not zero, and it is written, as protobuf encoders write it.
    fn is_zero(self) -> bool {
        matches!(self, Self::Varint(0) | Self::Fixed32(0) | Self::Fixed64(0))
    }

    fn wire_type(self) -> u8 {
        match self {
            Self::Varint(_) => VARINT,
            Self::Fixed64(_) => FIXED64,
            Self::Fixed32(_) => FIXED32,
        }
    }

    /// Writes the value without its tag (as in a packed list).
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Self::Varint(value) => varint(out, value),
            Self::Fixed32(value) => out.extend_from_slice(&value.to_le_bytes()),
            Self::Fixed64(value) => out.extend_from_slice(&value.to_le_bytes()),
        }
    }

    /// Writes the value as field `number`, unless it is zero and the field has no presence.
    pub fn write_field(self, out: &mut Vec<u8>, number: u32, has_presence: bool) {
        if has_presence || !self.is_zero() {
            tag(out, number, self.wire_type());
            self.write(out);
        }
    }
}

/// An integer of a field's kind, range-checked and encoded as that kind goes on the wire.
pub fn integer(kind: ValueKind, value: i128) -> Result<Scalar, String> {
    fn fit<T: TryFrom<i128>>(value: i128, name: &str) -> Result<T, String> {
        T::try_from(value).map_err(|_| format!("{value} is out of range for {name}"))
    }
    Ok(match kind {
        ValueKind::Int32 => Scalar::Varint(i64::from(fit::<i32>(value, "int32")?) as u64),
        ValueKind::Sint32 => {
            let n = fit::<i32>(value, "sint32")?;
            Scalar::Varint(u64::from(((n << 1) ^ (n >> 31)) as u32))
        }
        ValueKind::Sfixed32 => Scalar::Fixed32(fit::<i32>(value, "sfixed32")? as u32),
        ValueKind::Int64 => Scalar::Varint(fit::<i64>(value, "int64")? as u64),
        ValueKind::Sint64 => {
            let n = fit::<i64>(value, "sint64")?;
            Scalar::Varint(((n << 1) ^ (n >> 63)) as u64)
        }
        ValueKind::Sfixed64 => Scalar::Fixed64(fit::<i64>(value, "sfixed64")? as u64),
        ValueKind::Uint32 => Scalar::Varint(u64::from(fit::<u32>(value, "uint32")?)),
        ValueKind::Fixed32 => Scalar::Fixed32(fit::<u32>(value, "fixed32")?),
        ValueKind::Uint64 => Scalar::Varint(fit::<u64>(value, "uint64")?),
        ValueKind::Fixed64 => Scalar::Fixed64(fit::<u64>(value, "fixed64")?),
        ValueKind::Enum(_) => Scalar::Varint(i64::from(fit::<i32>(value, "an enum")?) as u64),
        ValueKind::Float => Scalar::Fixed32((value as f32).to_bits()),
        ValueKind::Double => Scalar::Fixed64((value as f64).to_bits()),
        ValueKind::Bool | ValueKind::String | ValueKind::Bytes | ValueKind::Message(_) => {
            return Err("a number is not a value of this field".to_owned());
        }
    })
}

/// A number or enum name given as text (a JSON string, a query parameter, a map key), parsed as
/// `kind`; `Ok(None)` for a kind that is not a number.
pub fn number_from_text(
    plans: &Plans,
    kind: ValueKind,
    text: &str,
) -> Result<Option<Scalar>, String> {
    fn parse<T: FromStr>(text: &str) -> Result<T, String> {
        text.parse::<T>()
            .map_err(|_| format!("{text:?} is not a valid number of this type"))
    }
    Ok(Some(match kind {
        ValueKind::Float => Scalar::Fixed32(parse::<f32>(text)?.to_bits()),
        ValueKind::Double => Scalar::Fixed64(parse::<f64>(text)?.to_bits()),
        ValueKind::Int32 | ValueKind::Sint32 | ValueKind::Sfixed32 => {
            integer(kind, i128::from(parse::<i32>(text)?))?
        }
        ValueKind::Int64 | ValueKind::Sint64 | ValueKind::Sfixed64 => {
            integer(kind, i128::from(parse::<i64>(text)?))?
        }
        ValueKind::Uint32 | ValueKind::Fixed32 => integer(kind, i128::from(parse::<u32>(text)?))?,
        ValueKind::Uint64 | ValueKind::Fixed64 => integer(kind, i128::from(parse::<u64>(text)?))?,
        ValueKind::Enum(index) => {
            let plan = plans.enumeration(index);
            if plan.is_null_value {
                return match text {
                    "NULL_VALUE" => Ok(Some(Scalar::Varint(0))),
                    _ => Err("expected null".to_owned()),
                };
            }
            let number = plan
                .number_of(text)
                .ok_or_else(|| format!("unknown enum value {text:?}"))?;
            Scalar::Varint(i64::from(number) as u64)
        }
        ValueKind::Bool | ValueKind::String | ValueKind::Bytes | ValueKind::Message(_) => {
            return Ok(None);
        }
    }))
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// Writes a field's tag.
pub fn tag(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Writes field `number` as a length-delimited value that `write` appends; the length is put
/// in front once known.
pub fn delimited<E>(
    out: &mut Vec<u8>,
    number: u32,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    tag(out, number, DELIMITED);
    let start = out.len();
    write(out)?;
    let mut len = (out.len() - start) as u64;
    let mut prefix = [0u8; 10];
    let mut used = 0;
    while len >= 0x80 {
        prefix[used] = (len as u8) | 0x80;
        len >>= 7;
        used += 1;
    }
    prefix[used] = len as u8;
    out.splice(start..start, prefix[..=used].iter().copied());
    Ok(())
}

/// Writes field `number` as the bytes given (a string or bytes field).
pub fn bytes_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    tag(out, number, DELIMITED);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Which members of a set (fields, oneofs) one JSON object gave, to refuse a second.
#[derive(Default)]
struct Seen {
    first: u64,
    rest: Vec<u64>,
}

impl Seen {
    /// Records `at`; false if it was there already.
    fn insert(&mut self, at: usize) -> bool {
        let (word, bit) = (at / 64, 1u64 << (at % 64));
        let slot = if word == 0 {
            &mut self.first
        } else {
            if self.rest.len() < word {
                self.rest.resize(word, 0);
            }
            &mut self.rest[word - 1]
        };
        let new = *slot & bit == 0;
        *slot |= bit;
        new
    }
}

/// The fields of one message (without tag or length).
struct Message<'p, 'o> {
    plans: &'p Plans,
    id: MessageId,
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Message<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let Self { plans, id, out } = self;
        match plans.message(id).well_known {
            None => deserializer.deserialize_map(Fields { plans, id, out }),
            Some(WellKnown::Wrapper) => {
                let value = &plans.message(id).fields[0];
                Single {
                    plans,
                    number: value.number,
                    kind: value.kind,
                    has_presence: false,
                    out,
                }
                .deserialize(deserializer)
            }
            Some(kind @ (WellKnown::Timestamp | WellKnown::Duration)) => {
                deserializer.deserialize_str(Time { kind, out })
            }
            Some(WellKnown::FieldMask) => deserializer.deserialize_str(FieldMask { out }),
            Some(WellKnown::Struct) => deserializer.deserialize_map(JsonObject { out }),
            Some(WellKnown::ListValue) => deserializer.deserialize_seq(JsonArray { out }),
            Some(WellKnown::Value) => deserializer.deserialize_any(JsonValue { out }),
            Some(WellKnown::Empty) => deserializer.deserialize_map(Empty),
            Some(WellKnown::Any) => any(plans, deserializer, out),
        }
    }
}

/// A message's JSON object, field by field.
struct Fields<'p, 'o> {
    plans: &'p Plans,
    id: MessageId,
    out: &'o mut Vec<u8>,
}

impl<'de> Visitor<'de> for Fields<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let plan = self.plans.message(self.id);
        let (mut fields, mut oneofs) = (Seen::default(), Seen::default());
        while let Some(at) = map.next_key_seed(FieldKey {
            fields: &plan.fields,
        })? {
            let field = &plan.fields[at];
            if !fields.insert(at) {
                return Err(A::Error::custom(format!(
                    "field {:?} given more than once",
                    &*field.json_name
                )));
            }
            let set = map.next_value_seed(FieldValue {
                plans: self.plans,
                field,
                out: self.out,
            })?;
            if let Some(oneof) = field.oneof.filter(|_| set)
                && !oneofs.insert(usize::from(oneof))
            {
                return Err(A::Error::custom(format!(
                    "field {:?} is a member of a oneof another field already set",
                    &*field.json_name
                )));
            }
        }
        Ok(())
    }
}

/// A key of a message's JSON object: the position of the field it names.
struct FieldKey<'p> {
    fields: &'p [FieldPlan],
}

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldKey<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<usize, E> {
        let by = |name: fn(&FieldPlan) -> &str| self.fields.iter().position(|f| name(f) == key);
        by(|field| &field.json_name)
            .or_else(|| by(|field| &field.name))
            .ok_or_else(|| E::custom(format!("unknown field {key:?}")))
    }
}

/// One field's value in a message's object; `true` when it set the field (`null` does not).
struct FieldValue<'p, 'o> {
    plans: &'p Plans,
    field: &'p FieldPlan,
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for FieldValue<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for FieldValue<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field's value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        let Self { plans, field, out } = self;
        if field.cardinality != Cardinality::Single {
            return Ok(false);
        }
        // `null` is a value of these two: `Value`'s null and `NullValue`'s only member.
        match field.kind {
            ValueKind::Message(id) if plans.message(id).well_known == Some(WellKnown::Value) => {
                // A `Value` whose `null_value` (field 1, a varint) is 0.
                bytes_field(out, field.number, &[(VALUE_NULL << 3) as u8, 0]);
                Ok(true)
            }
            ValueKind::Enum(index) if plans.enumeration(index).is_null_value => {
                Scalar::Varint(0).write_field(out, field.number, field.has_presence);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        let Self { plans, field, out } = self;
        match field.cardinality {
            Cardinality::Single => Single {
                plans,
                number: field.number,
                kind: field.kind,
                has_presence: field.has_presence,
                out,
            }
            .deserialize(deserializer)?,
            Cardinality::Repeated => deserializer.deserialize_seq(List { plans, field, out })?,
            Cardinality::Map => deserializer.deserialize_map(Map { plans, field, out })?,
        }
        Ok(true)
    }
}

/// One value of `kind` written as field `number`: a singular field, a list item, a map entry's
/// key or value, a wrapper's value.
struct Single<'p, 'o> {
    plans: &'p Plans,
    number: u32,
    kind: ValueKind,
    /// Written even at its zero value.
    has_presence: bool,
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Single<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let Self {
            plans,
            number,
            kind,
            has_presence,
            out,
        } = self;
        match kind {
            ValueKind::Message(id) => delimited(out, number, |out| {
                Message { plans, id, out }.deserialize(deserializer)
            }),
            ValueKind::String => deserializer.deserialize_str(Text {
                number,
                has_presence,
                out,
            }),
            ValueKind::Bytes => {
                let bytes = deserializer.deserialize_str(Base64)?;
                if has_presence || !bytes.is_empty() {
                    bytes_field(out, number, &bytes);
                }
                Ok(())
            }
            _ => {
                let scalar = deserializer.deserialize_any(Number { plans, kind })?;
                scalar.write_field(out, number, has_presence);
                Ok(())
            }
        }
    }
}

/// A JSON string written as a string field.
struct Text<'o> {
    number: u32,
    has_presence: bool,
    out: &'o mut Vec<u8>,
}

impl Visitor<'_> for Text<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        if self.has_presence || !text.is_empty() {
            bytes_field(self.out, self.number, text.as_bytes());
        }
        Ok(())
    }
}

/// A JSON string holding base64.
struct Base64;

impl Visitor<'_> for Base64 {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
        base64_bytes(text).map_err(E::custom)
    }
}

/// A number, a boolean, or an enum (by name or number) of `kind`.
struct Number<'p> {
    plans: &'p Plans,
    kind: ValueKind,
}

impl Number<'_> {
    fn is_null_value(&self) -> bool {
        matches!(self.kind, ValueKind::Enum(index) if self.plans.enumeration(index).is_null_value)
    }
}

impl Visitor<'_> for Number<'_> {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.kind {
            ValueKind::Bool => f.write_str("a boolean"),
            ValueKind::Enum(_) => f.write_str("an enum value's name or number"),
            _ => f.write_str("a number or a string holding one"),
        }
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Scalar, E> {
        if self.kind != ValueKind::Bool {
            return Err(E::invalid_type(de::Unexpected::Bool(value), &self));
        }
        Ok(Scalar::Varint(u64::from(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
        if self.kind == ValueKind::Bool || self.is_null_value() {
            return Err(E::invalid_type(de::Unexpected::Signed(value), &self));
        }
        integer(self.kind, i128::from(value)).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
        if self.kind == ValueKind::Bool || self.is_null_value() {
            return Err(E::invalid_type(de::Unexpected::Unsigned(value), &self));
        }
        integer(self.kind, i128::from(value)).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Scalar, E> {
        // The bounds as floats, and the largest integer: the 64-bit kinds' upper bound rounds
        // up to 2^63 (2^64) as a float, and that one value is read as the largest integer, as a
        // saturating cast reads it.
        let (min, max, largest): (f64, f64, i128) = match self.kind {
            ValueKind::Double => return Ok(Scalar::Fixed64(value.to_bits())),
            ValueKind::Float => {
                if !(f64::from(f32::MIN)..=f64::from(f32::MAX)).contains(&value) {
                    return Err(E::custom("float value out of range"));
                }
                return Ok(Scalar::Fixed32((value as f32).to_bits()));
            }
            ValueKind::Int32 | ValueKind::Sint32 | ValueKind::Sfixed32 => (
                f64::from(i32::MIN),
                f64::from(i32::MAX),
                i128::from(i32::MAX),
            ),
            ValueKind::Uint32 | ValueKind::Fixed32 => {
                (0.0, f64::from(u32::MAX), i128::from(u32::MAX))
            }
            ValueKind::Int64 | ValueKind::Sint64 | ValueKind::Sfixed64 => {
                (i64::MIN as f64, i64::MAX as f64, i128::from(i64::MAX))
            }
            ValueKind::Uint64 | ValueKind::Fixed64 => (0.0, u64::MAX as f64, i128::from(u64::MAX)),
            _ => return Err(E::invalid_type(de::Unexpected::Float(value), &self)),
        };
        if value.fract() != 0.0 {
            return Err(E::custom("expected an integer"));
        }
        if !(min..=max).contains(&value) {
            return Err(E::custom("integer out of range"));
        }
        integer(self.kind, (value as i128).min(largest)).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Scalar, E> {
        match number_from_text(self.plans, self.kind, text) {
            Ok(Some(scalar)) => Ok(scalar),
            Ok(None) => Err(E::invalid_type(de::Unexpected::Str(text), &self)),
            Err(reason) => Err(E::custom(reason)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        if self.is_null_value() {
            return Ok(Scalar::Varint(0));
        }
        Err(E::invalid_type(de::Unexpected::Unit, &self))
    }
}

/// A repeated field's JSON array.
struct List<'p, 'o> {
    plans: &'p Plans,
    field: &'p FieldPlan,
    out: &'o mut Vec<u8>,
}

impl<'de> Visitor<'de> for List<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Self { plans, field, out } = self;
        let kind = field.kind;
        if kind.is_packable() {
            let before = out.len();
            delimited(out, field.number, |out| {
                while let Some(scalar) = seq.next_element_seed(NumberSeed { plans, kind })? {
                    scalar.write(out);
                }
                Ok(())
            })?;
            // An empty list is no field at all rather than an empty packed one.
            if out.len() == before + tag_len(field.number) + 1 {
                out.truncate(before);
            }
            return Ok(());
        }
        while seq
            .next_element_seed(Element {
                plans,
                field,
                out: &mut *out,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// The bytes a length-delimited field's tag takes (an empty entry is the tag and a zero length).
fn tag_len(number: u32) -> usize {
    let key = (u64::from(number) << 3) | 1;
    (64 - key.leading_zeros() as usize).div_ceil(7)
}

/// One item of a list of strings, bytes or messages: each its own occurrence of the field.
struct Element<'p, 'o> {
    plans: &'p Plans,
    field: &'p FieldPlan,
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Element<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        Single {
            plans: self.plans,
            number: self.field.number,
            kind: self.field.kind,
            has_presence: true,
            out: self.out,
        }
        .deserialize(deserializer)
    }
}

/// One number of a packed list.
struct NumberSeed<'p> {
    plans: &'p Plans,
    kind: ValueKind,
}

impl<'de> DeserializeSeed<'de> for NumberSeed<'_> {
    type Value = Scalar;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar, D::Error> {
        deserializer.deserialize_any(Number {
            plans: self.plans,
            kind: self.kind,
        })
    }
}

/// A map field's JSON object: each key and value an entry message (key 1, value 2).
struct Map<'p, 'o> {
    plans: &'p Plans,
    field: &'p FieldPlan,
    out: &'o mut Vec<u8>,
}

impl<'de> Visitor<'de> for Map<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Self { plans, field, out } = self;
        let ValueKind::Message(entry) = field.kind else {
            return Err(A::Error::custom("a map field without its entry type"));
        };
        let [key, value] = &plans.message(entry).fields[..] else {
            return Err(A::Error::custom("a map entry type without key and value"));
        };
        loop {
            let mut more = true;
            delimited(out, field.number, |out| {
                more = map
                    .next_key_seed(MapKey {
                        plans,
                        kind: key.kind,
                        out: &mut *out,
                    })?
                    .is_some();
                if more {
                    map.next_value_seed(Single {
                        plans,
                        number: value.number,
                        kind: value.kind,
                        has_presence: true,
                        out,
                    })?;
                }
                Ok(())
            })?;
            if !more {
                // The entry opened for a key that did not come: take it back.
                out.truncate(out.len() - tag_len(field.number) - 1);
                return Ok(());
            }
        }
    }
}

/// A map key (always a JSON string) written as the entry's field 1.
struct MapKey<'p, 'o> {
    plans: &'p Plans,
    kind: ValueKind,
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for MapKey<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for MapKey<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        let scalar = match self.kind {
            ValueKind::String => {
                bytes_field(self.out, 1, key.as_bytes());
                return Ok(());
            }
            ValueKind::Bool => match key {
                "true" => Scalar::Varint(1),
                "false" => Scalar::Varint(0),
                _ => return Err(E::custom(format!("{key:?} is not a boolean map key"))),
            },
            kind => number_from_text(self.plans, kind, key)
                .map_err(E::custom)?
                .ok_or_else(|| E::custom("a map key of a kind maps cannot have"))?,
        };
        scalar.write_field(self.out, 1, true);
        Ok(())
    }
}

/// `google.protobuf.Timestamp` (an RFC 3339 string) or `Duration` (`"1.5s"`).
struct Time<'o> {
    /// `Timestamp` or `Duration`.
    kind: WellKnown,
    out: &'o mut Vec<u8>,
}

impl Visitor<'_> for Time<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a timestamp or duration string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        let (seconds, nanos) = if self.kind == WellKnown::Timestamp {
            if !is_strict_rfc3339(text) {
                return Err(E::custom(format!("{text:?} is not an RFC 3339 timestamp")));
            }
            let time = prost_types::Timestamp::from_str(text).map_err(E::custom)?;
            if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&time.seconds) {
                return Err(E::custom("timestamp out of range"));
            }
            (time.seconds, time.nanos)
        } else {
            let time = prost_types::Duration::from_str(text).map_err(E::custom)?;
            if time.seconds.unsigned_abs() > MAX_DURATION_SECONDS
                || time.nanos.unsigned_abs() > MAX_NANOS
            {
                return Err(E::custom("duration out of range"));
            }
            (time.seconds, time.nanos)
        };
        Scalar::Varint(seconds as u64).write_field(self.out, 1, false);
        Scalar::Varint(i64::from(nanos) as u64).write_field(self.out, 2, false);
        Ok(())
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.digits](Z|+HH:MM|-HH:MM)`, with upper-case `T` and `Z`, as the JSON
/// mapping's conformance tests require.
fn is_strict_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |from: usize, to: usize| {
        bytes
            .get(from..to)
            .is_some_and(|run| run.iter().all(u8::is_ascii_digit))
    };
    let at = |index: usize, expected: u8| bytes.get(index) == Some(&expected);
    let date_and_time = digits(0, 4)
        && at(4, b'-')
        && digits(5, 7)
        && at(7, b'-')
        && digits(8, 10)
        && at(10, b'T')
        && digits(11, 13)
        && at(13, b':')
        && digits(14, 16)
        && at(16, b':')
        && digits(17, 19);
    if !date_and_time {
        return false;
    }
    let mut end = 19;
    if at(end, b'.') {
        let fraction = bytes[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if fraction == 0 {
            return false;
        }
        end += 1 + fraction;
    }
    match &bytes[end..] {
        [b'Z'] => true,
        [b'+' | b'-', ..] => {
            bytes.len() == end + 6
                && digits(end + 1, end + 3)
                && at(end + 3, b':')
                && digits(end + 4, end + 6)
        }
        _ => false,
    }
}

/// `google.protobuf.FieldMask`: lowerCamel paths joined with commas, written snake_case.
struct FieldMask<'o> {
    out: &'o mut Vec<u8>,
}

impl Visitor<'_> for FieldMask<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field mask string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        let mut path = String::new();
        for camel in text.split(',').filter(|path| !path.is_empty()) {
            path.clear();
            for ch in camel.chars() {
                if ch == '_' {
                    return Err(E::custom(format!("{camel:?} is not a lowerCamelCase path")));
                }
                if ch.is_ascii_uppercase() {
                    path.push('_');
                    path.push(ch.to_ascii_lowercase());
                } else {
                    path.push(ch);
                }
            }
            bytes_field(self.out, 1, path.as_bytes());
        }
        Ok(())
    }
}

/// `google.protobuf.Value`'s fields (`Struct` and `ListValue` are its object and array).
const VALUE_NULL: u32 = 1;
const VALUE_NUMBER: u32 = 2;
const VALUE_STRING: u32 = 3;
const VALUE_BOOL: u32 = 4;
const VALUE_STRUCT: u32 = 5;
const VALUE_LIST: u32 = 6;

/// Any JSON as `google.protobuf.Value`.
struct JsonValue<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for JsonValue<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonValue<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Scalar::Varint(0).write_field(self.out, VALUE_NULL, true);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        Scalar::Varint(u64::from(value)).write_field(self.out, VALUE_BOOL, true);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.visit_f64(value as f64)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.visit_f64(value as f64)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        Scalar::Fixed64(value.to_bits()).write_field(self.out, VALUE_NUMBER, true);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        bytes_field(self.out, VALUE_STRING, text.as_bytes());
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        delimited(self.out, VALUE_LIST, |out| list_values(seq, out))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        delimited(self.out, VALUE_STRUCT, |out| struct_fields(map, out))
    }
}

/// A JSON object as `google.protobuf.Struct` (`map<string, Value> fields = 1`).
struct JsonObject<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> Visitor<'de> for JsonObject<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        struct_fields(map, self.out)
    }
}

/// A JSON array as `google.protobuf.ListValue` (`repeated Value values = 1`).
struct JsonArray<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> Visitor<'de> for JsonArray<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        list_values(seq, self.out)
    }
}

/// A `ListValue`'s items (field 1).
fn list_values<'de, A: SeqAccess<'de>>(mut seq: A, out: &mut Vec<u8>) -> Result<(), A::Error> {
    loop {
        let mut more = false;
        delimited(out, 1, |out| {
            more = seq.next_element_seed(JsonValue { out })?.is_some();
            Ok(())
        })?;
        if !more {
            out.truncate(out.len() - 2);
            return Ok(());
        }
    }
}

/// A `Struct`'s entries (field 1: key 1, `Value` 2).
fn struct_fields<'de, A: MapAccess<'de>>(mut map: A, out: &mut Vec<u8>) -> Result<(), A::Error> {
    loop {
        let mut more = false;
        delimited(out, 1, |out| {
            let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
                return Ok(());
            };
            more = true;
            bytes_field(out, 1, key.as_bytes());
            delimited(out, 2, |out| map.next_value_seed(JsonValue { out }))
        })?;
        if !more {
            out.truncate(out.len() - 2);
            return Ok(());
        }
    }
}

/// `google.protobuf.Empty`: `{}`.
struct Empty;

impl<'de> Visitor<'de> for Empty {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an empty JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(A::Error::custom("google.protobuf.Empty has no fields"));
        }
        Ok(())
    }
}

/// `google.protobuf.Any`: `{"@type": "type.googleapis.com/pkg.Message", ...fields}`, or with a
/// `"value"` key for a well-known type. The `@type` may come last, so the object is read whole
/// first (a repeated key in it keeps its last value).
fn any<'de, D: Deserializer<'de>>(
    plans: &Plans,
    deserializer: D,
    out: &mut Vec<u8>,
) -> Result<(), D::Error> {
    use serde::Deserialize as _;
    let mut object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    let type_url = match object.remove("@type") {
        Some(serde_json::Value::String(type_url)) => type_url,
        Some(_) => return Err(D::Error::custom("\"@type\" must be a string")),
        None => return Err(D::Error::custom("an Any without \"@type\"")),
    };
    let name = type_url
        .rsplit_once('/')
        .map(|(_, name)| name)
        .ok_or_else(|| D::Error::custom(format!("type URL {type_url:?} has no '/'")))?;
    let inner = plans
        .id_of(name)
        .ok_or_else(|| D::Error::custom(format!("unknown message type {name:?}")))?;
    bytes_field(out, 1, type_url.as_bytes());
    delimited(out, 2, |out| {
        let payload = if plans.message(inner).well_known.is_some() {
            let value = object
                .remove("value")
                .ok_or_else(|| D::Error::custom("an Any of a well-known type without \"value\""))?;
            if let Some(key) = object.keys().next() {
                return Err(D::Error::custom(format!("unknown field {key:?}")));
            }
            Message {
                plans,
                id: inner,
                out,
            }
            .deserialize(value)
        } else {
            serde_json::Value::Object(object).deserialize_map(Fields {
                plans,
                id: inner,
                out,
            })
        };
        payload.map_err(D::Error::custom)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_rfc3339_takes_the_mapping_s_forms_only() {
        for good in [
            "1972-06-30T23:59:60Z",
            "2019-03-26T14:00:00.9Z",
            "2019-03-26T14:00:00.4999+10:00",
            "2019-03-26T14:00:00-04:00",
        ] {
            assert!(is_strict_rfc3339(good), "{good}");
        }
        for bad in [
            "2019-03-26t14:00:00Z",
            "2019-03-26T14:00:00z",
            "2019-03-26T14:00:00,9Z",
            "2019-03-26T14:00:00.Z",
            "2019-03-26T14:00Z",
            "2019-03-26T14:00:00+0400",
            "2019-03-26T14:00:00Z ",
            "+2019-03-26T14:00:00Z",
            "2019-03-26",
            "",
        ] {
            assert!(!is_strict_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn tag_len_is_the_length_of_the_tag_written() {
        for number in [1, 15, 16, 2047, 2048, 262_143, 262_144, (1 << 29) - 1] {
            let mut tag_bytes = Vec::new();
            tag(&mut tag_bytes, number, DELIMITED);
            assert_eq!(tag_len(number), tag_bytes.len(), "field {number}");
        }
    }

    #[test]
    fn seen_refuses_a_second_insert_below_and_above_64() {
        let mut seen = Seen::default();
        for at in [0, 63, 64, 200] {
            assert!(seen.insert(at));
            assert!(!seen.insert(at));
        }
    }

    #[test]
    fn integers_are_range_checked_and_encoded_by_kind() {
        assert_eq!(integer(ValueKind::Sint32, -1), Ok(Scalar::Varint(1)));
        assert_eq!(integer(ValueKind::Sint64, 1), Ok(Scalar::Varint(2)));
        assert_eq!(
            integer(ValueKind::Int32, -1),
            Ok(Scalar::Varint(u64::MAX)),
            "negative int32 is sign-extended to ten bytes"
        );
        assert!(integer(ValueKind::Uint32, -1).is_err());
        assert!(integer(ValueKind::Int64, i128::from(u64::MAX)).is_err());
    }
}
