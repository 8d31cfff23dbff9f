//! JSON schemas of messages and fields in the proto3 JSON mapping the transcoder speaks, in two
//! forms:
//!
//! - the **response** form, what the gateway writes: camelCase names, 64-bit integers as strings,
//!   enums by name, `Timestamp` as RFC 3339;
//! - the **request** form, what the gateway accepts: the contract's rules ([`Validation`]) as
//!   `required`, `minLength`, `maxLength`, `pattern`, `minimum`, `maximum`, `minItems` and
//!   `maxItems`; `additionalProperties: false`, since unknown fields are refused; `nullable` where
//!   JSON `null` (proto3 JSON's "not set") passes the rules; and every spelling proto3 JSON reads
//!   for a value: integers as JSON numbers or as decimal strings, enums by name or by number.
//!
//! Query parameters and path variables are text, read by the transcoder's own scalar parser:
//! [`Schemas::parameter`].

use std::collections::BTreeMap;

use prost_reflect::{Cardinality, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::decimal;
use crate::proxy::validate::{FieldRules, Validation, ValueRules};

/// Which side of a call a message's schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    Request,
    Response,
}

/// The component schemas met so far and the rules they are built from.
pub(super) struct Schemas<'v> {
    components: Map<String, Value>,
    /// Component name of each message and form (a message needed in both forms gets two).
    names: BTreeMap<(String, Form), String>,
    validation: &'v Validation,
}

impl<'v> Schemas<'v> {
    /// No schemas yet; rules from `validation`.
    pub(super) fn new(validation: &'v Validation) -> Self {
        Self {
            components: Map::new(),
            names: BTreeMap::new(),
            validation,
        }
    }

    /// Every component schema, by name.
    pub(super) fn into_components(self) -> Map<String, Value> {
        self.components
    }

    /// A `$ref` to `message` in the response form.
    pub(super) fn response_message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(known) = well_known(message.full_name()) {
            return known;
        }
        self.component(message, Form::Response, |schemas| {
            let properties: Map<String, Value> = message
                .fields()
                .map(|field| (field.json_name().to_owned(), schemas.response_field(&field)))
                .collect();
            json!({"type": "object", "properties": properties})
        })
    }

    /// One field's value in the response form.
    pub(super) fn response_field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let value = map_value_kind(field).map_or(json!({}), |kind| self.response_single(&kind));
            return json!({"type": "object", "additionalProperties": value});
        }
        let single = self.response_single(&field.kind());
        if field.cardinality() == Cardinality::Repeated {
            json!({"type": "array", "items": single})
        } else {
            single
        }
    }

    fn response_single(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int64", "minimum": 0})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "int64"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(descriptor) => json!({"type": "string", "enum": names(descriptor, false)}),
            Kind::Message(message) => self.response_message(message),
        }
    }

    /// A request body that is `message`: a `$ref` to its request form, or, when path variables
    /// bind some of its fields (`bound`, field paths relative to `message`), an inline schema in
    /// which those fields have no rules and are never required: the body may carry them, but the
    /// path's value replaces theirs.
    pub(super) fn request_body(
        &mut self,
        message: &MessageDescriptor,
        bound: &[&[String]],
    ) -> Value {
        if bound.is_empty() {
            self.request_message(message)
        } else {
            self.request_object(message, bound)
        }
    }

    /// Whether a request body for `message` may be left out: no field outside `bound` is
    /// required by the rules.
    pub(super) fn body_is_optional(
        &self,
        message: &MessageDescriptor,
        bound: &[&[String]],
    ) -> bool {
        message.fields().all(|field| {
            let is_bound = bound
                .iter()
                .any(|path| path.first().is_some_and(|name| name == field.name()));
            is_bound || self.validation.rules(&field).admits_absence(&field)
        })
    }

    /// Whether a request may leave `field` out (the rules; see [`FieldRules::admits_absence`]).
    pub(super) fn admits_absence(&self, field: &FieldDescriptor) -> bool {
        self.validation.rules(field).admits_absence(field)
    }

    fn request_message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(known) = well_known(message.full_name()) {
            return known;
        }
        self.component(message, Form::Request, |schemas| {
            schemas.request_object(message, &[])
        })
    }

    fn request_object(&mut self, message: &MessageDescriptor, bound: &[&[String]]) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let inner: Vec<&[String]> = bound
                .iter()
                .filter_map(|path| path.split_first())
                .filter(|(first, _)| first.as_str() == field.name())
                .map(|(_, rest)| rest)
                .collect();
            let rules = self.validation.rules(&field);
            let schema = match field.kind() {
                _ if inner.iter().any(|rest| rest.is_empty()) => {
                    self.request_property(&field, &FieldRules::default())
                }
                // The path sets a field inside this message, so the message is always present:
                // the body may leave it out.
                Kind::Message(nested) if !inner.is_empty() => {
                    nullable(self.request_object(&nested, &inner))
                }
                _ => {
                    if !rules.admits_absence(&field) {
                        required.push(field.json_name().to_owned());
                    }
                    self.request_property(&field, rules)
                }
            };
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut object = json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            object["required"] = json!(required);
        }
        object
    }

    /// A field's value in a request body, under `rules`.
    fn request_property(&mut self, field: &FieldDescriptor, rules: &FieldRules) -> Value {
        let schema = if field.is_map() {
            let value = map_value_kind(field)
                .map_or(json!({}), |kind| self.request_single(&kind, None, false));
            let mut map = json!({"type": "object", "additionalProperties": value});
            if rules.required {
                map["minProperties"] = json!(1);
            }
            map
        } else if field.is_list() {
            list(self.request_single(&field.kind(), None, false), rules)
        } else {
            let nonzero = rules.required && !field.supports_presence();
            self.request_single(&field.kind(), rules.value.as_ref(), nonzero)
        };
        if rules.admits_absence(field) {
            nullable(schema)
        } else {
            schema
        }
    }

    /// One value in a request body. `nonzero`: the field is required but cannot tell "set" from
    /// its zero value, so the zero value counts as left out.
    fn request_single(&mut self, kind: &Kind, rules: Option<&ValueRules>, nonzero: bool) -> Value {
        if let Some((format, signed, type_range)) = integer_type(kind) {
            let ranges = without_zero(bounded(type_range, rules), nonzero);
            let mut branches = integer_branches(&ranges, format);
            branches.push(json!({"type": "string", "pattern": decimal::pattern(&ranges, signed)}));
            return json!({"anyOf": branches});
        }
        match kind {
            Kind::Enum(descriptor) => {
                let defined_only = matches!(rules, Some(ValueRules::EnumDefinedOnly));
                let numbers = if defined_only {
                    defined_numbers(descriptor)
                } else {
                    vec![(i128::from(i32::MIN), i128::from(i32::MAX))]
                };
                let mut branches =
                    vec![json!({"type": "string", "enum": names(descriptor, nonzero)})];
                branches.extend(integer_branches(
                    &without_zero(numbers, nonzero),
                    Some("int32"),
                ));
                json!({"anyOf": branches})
            }
            Kind::Message(message) => self.request_message(message),
            scalar => text_scalar(scalar, rules, nonzero),
        }
    }

    /// A query parameter's or path variable's schema: text the transcoder reads into `field`.
    pub(super) fn parameter(&self, field: &FieldDescriptor) -> Value {
        let rules = self.validation.rules(field);
        if field.is_list() {
            return list(text_single(&field.kind(), None, false), rules);
        }
        let nonzero = rules.required && !field.supports_presence();
        text_single(&field.kind(), rules.value.as_ref(), nonzero)
    }

    /// A `$ref` to the component of `message` in `form`, built by `build` the first time.
    fn component(
        &mut self,
        message: &MessageDescriptor,
        form: Form,
        build: impl FnOnce(&mut Self) -> Value,
    ) -> Value {
        let key = (message.full_name().to_owned(), form);
        if let Some(name) = self.names.get(&key) {
            return reference(name);
        }
        let mut name = message.full_name().to_owned();
        if self.components.contains_key(&name) {
            // Needed in both forms: the second one is named for its side.
            name.push_str(match form {
                Form::Request => "Input",
                Form::Response => "Output",
            });
        }
        self.names.insert(key, name.clone());
        // Placeholder first: a message may refer to itself.
        self.components.insert(name.clone(), json!({}));
        let schema = build(self);
        self.components.insert(name.clone(), schema);
        reference(&name)
    }
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `schema` also admitting JSON `null`. OpenAPI 3.0 reads `nullable` only beside a `type`, so a
/// `$ref` is wrapped, and in an `anyOf` the first branch takes it.
fn nullable(mut schema: Value) -> Value {
    if schema.get("$ref").is_some() {
        return json!({"type": "object", "nullable": true, "allOf": [schema]});
    }
    if let Some(first) = schema
        .get_mut("anyOf")
        .and_then(Value::as_array_mut)
        .and_then(|branches| branches.first_mut())
    {
        first["nullable"] = json!(true);
    } else if schema.get("type").is_some() {
        schema["nullable"] = json!(true);
    }
    schema
}

/// A list of `items` under the `repeated` rules (and at least one item when required).
fn list(items: Value, rules: &FieldRules) -> Value {
    let mut schema = json!({"type": "array", "items": items});
    let (mut items_min, items_max) = match &rules.value {
        Some(ValueRules::Repeated {
            items_min,
            items_max,
        }) => (items_min.unwrap_or(0), *items_max),
        _ => (0, None),
    };
    if rules.required {
        items_min = items_min.max(1);
    }
    if items_min > 0 {
        schema["minItems"] = json!(items_min);
    }
    if let Some(max) = items_max {
        schema["maxItems"] = json!(max);
    }
    schema
}

/// One scalar written as text: a query parameter, a path variable, and the body's strings,
/// booleans, bytes and floating-point numbers (which are the same in a body).
fn text_single(kind: &Kind, rules: Option<&ValueRules>, nonzero: bool) -> Value {
    if let Some((format, _, type_range)) = integer_type(kind) {
        let mut schema = json!({"type": "integer"});
        if let Some(format) = format {
            schema["format"] = json!(format);
        }
        if let Some(&(low, high)) = bounded(type_range, rules).first() {
            schema["minimum"] = number(low);
            schema["maximum"] = number(high);
            if nonzero && low <= 0 && 0 <= high {
                schema["not"] = json!({"enum": [0]});
            }
        }
        return schema;
    }
    match kind {
        Kind::Enum(descriptor) => {
            // The query parser takes a name or a number the enum defines.
            let numbers = without_zero(defined_numbers(descriptor), nonzero);
            json!({"anyOf": [
                {"type": "string", "enum": names(descriptor, nonzero)},
                {"type": "string", "pattern": decimal::pattern(&numbers, true)},
            ]})
        }
        scalar => text_scalar(scalar, rules, nonzero),
    }
}

/// Strings, booleans, bytes and floating-point numbers, the same in a body and in text.
fn text_scalar(kind: &Kind, rules: Option<&ValueRules>, nonzero: bool) -> Value {
    match kind {
        Kind::String => {
            let mut schema = json!({"type": "string"});
            let (mut len_min, len_max, pattern) = match rules {
                Some(ValueRules::String {
                    len_min,
                    len_max,
                    pattern,
                }) => (len_min.unwrap_or(0), *len_max, pattern.as_ref()),
                _ => (0, None, None),
            };
            if nonzero {
                len_min = len_min.max(1);
            }
            if len_min > 0 {
                schema["minLength"] = json!(len_min);
            }
            if let Some(max) = len_max {
                schema["maxLength"] = json!(max);
            }
            if let Some(pattern) = pattern {
                schema["pattern"] = json!(pattern.source);
            }
            schema
        }
        Kind::Bool if nonzero => json!({"type": "boolean", "enum": [true]}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Bytes if nonzero => json!({"type": "string", "format": "byte", "minLength": 1}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Double | Kind::Float if nonzero => json!({"type": "number", "not": {"enum": [0]}}),
        Kind::Double | Kind::Float => json!({"type": "number"}),
        // Integers, enums and messages have their own schemas; this is not reached for them.
        _ => json!({}),
    }
}

/// An integer kind's OpenAPI format, whether it is signed, and its range.
fn integer_type(kind: &Kind) -> Option<(Option<&'static str>, bool, (i128, i128))> {
    let range = |low: i128, high: i128| (low, high);
    Some(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            (Some("int32"), true, range(i32::MIN.into(), i32::MAX.into()))
        }
        Kind::Uint32 | Kind::Fixed32 => (Some("int64"), false, range(0, u32::MAX.into())),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            (Some("int64"), true, range(i64::MIN.into(), i64::MAX.into()))
        }
        Kind::Uint64 | Kind::Fixed64 => (None, false, range(0, u64::MAX.into())),
        _ => return None,
    })
}

/// The type's range narrowed by the integer rules (empty when they leave nothing).
fn bounded((low, high): (i128, i128), rules: Option<&ValueRules>) -> Vec<(i128, i128)> {
    let (low, high) = match rules {
        Some(ValueRules::Integer { min, max }) => (
            min.as_ref().map_or(low, |min| min.value.max(low)),
            max.as_ref().map_or(high, |max| max.value.min(high)),
        ),
        _ => (low, high),
    };
    if low <= high {
        vec![(low, high)]
    } else {
        Vec::new()
    }
}

/// `ranges` without 0 when `nonzero`.
fn without_zero(ranges: Vec<(i128, i128)>, nonzero: bool) -> Vec<(i128, i128)> {
    if !nonzero {
        return ranges;
    }
    let mut split = Vec::new();
    for (low, high) in ranges {
        if low <= 0 && 0 <= high {
            if low < 0 {
                split.push((low, -1));
            }
            if high > 0 {
                split.push((1, high));
            }
        } else {
            split.push((low, high));
        }
    }
    split
}

/// One `integer` schema per range.
fn integer_branches(ranges: &[(i128, i128)], format: Option<&str>) -> Vec<Value> {
    ranges
        .iter()
        .map(|&(low, high)| {
            let mut branch =
                json!({"type": "integer", "minimum": number(low), "maximum": number(high)});
            if let Some(format) = format {
                branch["format"] = json!(format);
            }
            branch
        })
        .collect()
}

/// An integer as a JSON number (every bound here fits an `i64` or a `u64`).
fn number(value: i128) -> Value {
    match (i64::try_from(value), u64::try_from(value)) {
        (Ok(signed), _) => json!(signed),
        (_, Ok(unsigned)) => json!(unsigned),
        _ => json!(value as f64),
    }
}

/// The enum's value names, without those of number 0 when `nonzero`.
fn names(descriptor: &EnumDescriptor, nonzero: bool) -> Vec<String> {
    descriptor
        .values()
        .filter(|value| !(nonzero && value.number() == 0))
        .map(|value| value.name().to_owned())
        .collect()
}

/// The numbers the enum defines, as sorted ranges of consecutive numbers.
fn defined_numbers(descriptor: &EnumDescriptor) -> Vec<(i128, i128)> {
    let mut numbers: Vec<i128> = descriptor
        .values()
        .map(|v| i128::from(v.number()))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut ranges: Vec<(i128, i128)> = Vec::new();
    for number in numbers {
        match ranges.last_mut() {
            Some((_, high)) if *high + 1 == number => *high = number,
            _ => ranges.push((number, number)),
        }
    }
    ranges
}

/// The kind of a map field's values.
fn map_value_kind(field: &FieldDescriptor) -> Option<Kind> {
    let Kind::Message(entry) = field.kind() else {
        return None;
    };
    entry.get_field_by_name("value").map(|value| value.kind())
}

/// The JSON forms of the well-known types the contracts use.
fn well_known(full_name: &str) -> Option<Value> {
    Some(match full_name {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "example": "1.5s"}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.StringValue" => json!({"type": "string", "nullable": true}),
        "google.protobuf.BoolValue" => json!({"type": "boolean", "nullable": true}),
        "google.protobuf.Int32Value" => json!({"type": "integer", "nullable": true}),
        "google.protobuf.Int64Value" => {
            json!({"type": "string", "format": "int64", "nullable": true})
        }
        "google.protobuf.DoubleValue" => json!({"type": "number", "nullable": true}),
        _ => return None,
    })
}
