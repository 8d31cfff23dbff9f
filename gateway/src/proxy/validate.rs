//! Request validation: the field rules of the `.proto` contracts, compiled at start-up into a plan
//! per request message and checked after request transcoding, before the backend is called.
//!
//! Rules come from two annotations on request fields (docs/errors.md, "Validation"):
//!
//! - `(google.api.field_behavior) = REQUIRED`, or protovalidate's `required`: the field must be
//!   set (a message or `optional` field present; any other field not its zero value; a list not
//!   empty).
//! - `(buf.validate.field)`: string `min_len`, `max_len` (characters) and `pattern`; `int32`,
//!   `int64`, `uint32` and `uint64` bounds (`gt`, `gte`, `lt`, `lte`); enum `defined_only`;
//!   repeated `min_items` and `max_items`.
//!
//! As in protovalidate, the rules of a field that tracks presence (`optional`, message, oneof
//! member) apply only when it is set; those of any other field apply always, to its zero value
//! too. A rule this module does not enforce makes start-up fail ([`RuleError`]): a rule must never
//! look enforced when it is not.
//!
//! The plan works on the encoded request (its protobuf wire bytes), not on its JSON, so any
//! transcoder that encodes the message can use it ([`Validation::check`]), and one that does not
//! can check field by field ([`ValueRules::check`] on a [`FieldValue`]). What the plan needs of
//! the descriptors (numbers, types, presence, oneofs) is read once, when it is compiled. The
//! OpenAPI document reads the same compiled rules ([`Validation::rules`]), so what it promises is
//! what the gateway checks.

use std::{collections::BTreeMap, fmt, sync::Arc};

use prost_reflect::{
    DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};
use regex::Regex;

use crate::{
    routing::{Route, RouteTable},
    transcode::{
        BodyMapping, WireError,
        wire::{Raw, Reader},
    },
};

/// The `google.api.field_behavior` extension (number 1052 on `FieldOptions`).
const FIELD_BEHAVIOR_EXTENSION: &str = "google.api.field_behavior";
/// The protovalidate field rules extension (number 1159 on `FieldOptions`).
const FIELD_RULES_EXTENSION: &str = "buf.validate.field";
/// The extension numbers above, to notice them in options whose definitions the pool lacks.
const RULE_EXTENSION_NUMBERS: [u32; 2] = [1052, 1159];
/// `google.api.FieldBehavior.REQUIRED`.
const BEHAVIOR_REQUIRED: i32 = 2;

/// The rules of one field, read from its options.
#[derive(Debug, Clone, Default)]
pub struct FieldRules {
    /// The field must be set.
    pub required: bool,
    /// The rules of its value (for a repeated field: of its list).
    pub value: Option<ValueRules>,
}

/// The rules of a field's value.
#[derive(Debug, Clone)]
pub enum ValueRules {
    /// A string's length in characters (Unicode code points) and a pattern it must contain.
    String {
        /// `string.min_len`.
        len_min: Option<u64>,
        /// `string.max_len`.
        len_max: Option<u64>,
        /// `string.pattern`.
        pattern: Option<Pattern>,
    },
    /// An integer's bounds, both inclusive (`gt: 0` is a minimum of 1).
    Integer {
        /// The smallest value allowed.
        min: Option<Bound>,
        /// The largest value allowed.
        max: Option<Bound>,
    },
    /// `enum.defined_only`: only the numbers the enum defines.
    EnumDefinedOnly,
    /// A list's number of items.
    Repeated {
        /// `repeated.min_items`.
        items_min: Option<u64>,
        /// `repeated.max_items`.
        items_max: Option<u64>,
    },
}

/// An inclusive integer bound and the rule it came from.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The bound (an `i128` holds every `int64` and `uint64`).
    pub value: i128,
    /// The rule, for messages: `int64.gte`.
    pub rule: String,
}

/// A compiled `string.pattern`.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The expression as written in the `.proto`.
    pub source: String,
    regex: Regex,
}

/// Why the descriptors' rules cannot be enforced. Start-up stops with it.
#[derive(Debug, thiserror::Error)]
#[error("validation rules of {field}: {reason}")]
pub struct RuleError {
    /// The field, by full name.
    field: String,
    /// What is wrong.
    reason: String,
}

impl RuleError {
    fn new(field: &FieldDescriptor, reason: impl Into<String>) -> Self {
        Self {
            field: field.full_name().to_owned(),
            reason: reason.into(),
        }
    }
}

impl FieldRules {
    /// Reads the rules of `field` from its options. Fails on a rule this module does not
    /// enforce, on a rule that does not fit the field's type, and on bounds that leave no value.
    pub fn read(field: &FieldDescriptor) -> Result<Self, RuleError> {
        let options = field.options();
        let pool = field.parent_pool();
        let extension = |name| -> Option<ExtensionDescriptor> {
            pool.get_extension_by_name(name)
                .filter(|extension| options.has_extension(extension))
        };
        // Options of an extension the pool does not define are kept as unknown fields: the rules
        // are there but cannot be read, so they cannot be enforced either.
        if let Some(unknown) = options
            .unknown_fields()
            .find(|unknown| RULE_EXTENSION_NUMBERS.contains(&unknown.number()))
        {
            return Err(RuleError::new(
                field,
                format!(
                    "option {} is set but the descriptors do not define it",
                    unknown.number()
                ),
            ));
        }
        let mut rules = Self::default();
        if let Some(behavior) = extension(FIELD_BEHAVIOR_EXTENSION) {
            rules.required = match options.get_extension(&behavior).as_ref() {
                Value::List(values) => values
                    .iter()
                    .any(|value| value.as_enum_number() == Some(BEHAVIOR_REQUIRED)),
                _ => false,
            };
        }
        let Some(field_rules) = extension(FIELD_RULES_EXTENSION) else {
            return Ok(rules);
        };
        let Some(field_rules) = options.get_extension(&field_rules).as_message().cloned() else {
            return Ok(rules);
        };
        refuse_unknown(field, &field_rules)?;
        for (rule, value) in field_rules.fields() {
            match (rule.name(), value) {
                ("required", Value::Bool(required)) => rules.required |= required,
                (kind, Value::Message(kind_rules)) => {
                    rules.value = Some(value_rules(field, kind, kind_rules)?);
                }
                (other, _) => {
                    return Err(RuleError::new(
                        field,
                        format!("rule {other:?} is not enforced by the gateway"),
                    ));
                }
            }
        }
        Ok(rules)
    }

    /// Whether a request may leave the field out (or send JSON `null`, which proto3 JSON reads
    /// as "not set"): it is not required, and it tracks presence (so its rules are skipped when
    /// unset) or its zero value passes its rules.
    pub fn admits_absence(&self, field: &FieldDescriptor) -> bool {
        if self.required {
            return false;
        }
        if field.supports_presence() {
            return true;
        }
        let zero = if field.is_list() || field.is_map() {
            FieldValue::Items(0)
        } else {
            Encoding::of(&field.kind()).zero()
        };
        match &self.value {
            None => true,
            Some(rules) => rules.check(field, zero).is_none(),
        }
    }
}

/// A protovalidate rule this module does not know is refused rather than skipped.
fn refuse_unknown(field: &FieldDescriptor, rules: &DynamicMessage) -> Result<(), RuleError> {
    if let Some(unknown) = rules.unknown_fields().next() {
        return Err(RuleError::new(
            field,
            format!(
                "{} field {} is a rule the gateway does not enforce",
                rules.descriptor().full_name(),
                unknown.number()
            ),
        ));
    }
    Ok(())
}

/// The rules of one kind (`string`, `int64`, ...), checked against the field's type.
fn value_rules(
    field: &FieldDescriptor,
    kind: &str,
    rules: &DynamicMessage,
) -> Result<ValueRules, RuleError> {
    refuse_unknown(field, rules)?;
    let fits = match kind {
        "repeated" => field.is_list(),
        "string" => !field.is_list() && matches!(field.kind(), Kind::String),
        "enum" => !field.is_list() && matches!(field.kind(), Kind::Enum(_)),
        "int32" => !field.is_list() && matches!(field.kind(), Kind::Int32),
        "int64" => !field.is_list() && matches!(field.kind(), Kind::Int64),
        "uint32" => !field.is_list() && matches!(field.kind(), Kind::Uint32),
        "uint64" => !field.is_list() && matches!(field.kind(), Kind::Uint64),
        _ => {
            return Err(RuleError::new(
                field,
                format!("rule kind {kind:?} is not enforced by the gateway"),
            ));
        }
    };
    if !fits {
        return Err(RuleError::new(
            field,
            format!("rule kind {kind:?} does not fit the field's type"),
        ));
    }
    let mut unsigned = BTreeMap::new();
    let mut integer = BTreeMap::new();
    let mut pattern = None;
    let mut defined_only = false;
    for (rule, value) in rules.fields() {
        let name = rule.name().to_owned();
        match value {
            Value::U64(number) if matches!(kind, "string" | "repeated") => {
                unsigned.insert(name, *number);
            }
            Value::String(source) if kind == "string" && name == "pattern" => {
                let regex = Regex::new(source).map_err(|error| {
                    RuleError::new(field, format!("string.pattern does not compile: {error}"))
                })?;
                pattern = Some(Pattern {
                    source: source.clone(),
                    regex,
                });
            }
            Value::Bool(on) if kind == "enum" && name == "defined_only" => defined_only = *on,
            other => {
                let Some(number) = as_integer(other) else {
                    return Err(RuleError::new(
                        field,
                        format!("rule {kind}.{name} is not enforced by the gateway"),
                    ));
                };
                integer.insert(name, number);
            }
        }
    }
    let rules = match kind {
        "string" => {
            only(field, kind, &["min_len", "max_len"], unsigned.keys())?;
            ValueRules::String {
                len_min: unsigned.get("min_len").copied(),
                len_max: unsigned.get("max_len").copied(),
                pattern,
            }
        }
        "repeated" => {
            only(field, kind, &["min_items", "max_items"], unsigned.keys())?;
            ValueRules::Repeated {
                items_min: unsigned.get("min_items").copied(),
                items_max: unsigned.get("max_items").copied(),
            }
        }
        "enum" if defined_only => ValueRules::EnumDefinedOnly,
        "enum" => {
            return Err(RuleError::new(
                field,
                "enum rules other than defined_only: true are not enforced by the gateway",
            ));
        }
        _ => {
            only(field, kind, &["gt", "gte", "lt", "lte"], integer.keys())?;
            let bound = |name: &str, shift: i128| {
                integer.get(name).map(|value| Bound {
                    value: value + shift,
                    rule: format!("{kind}.{name}"),
                })
            };
            ValueRules::Integer {
                min: bound("gte", 0).or_else(|| bound("gt", 1)),
                max: bound("lte", 0).or_else(|| bound("lt", -1)),
            }
        }
    };
    let empty = match &rules {
        ValueRules::String {
            len_min: Some(min),
            len_max: Some(max),
            ..
        }
        | ValueRules::Repeated {
            items_min: Some(min),
            items_max: Some(max),
        } => min > max,
        // protovalidate reads `gt` above `lt` as "outside the range"; not enforced here.
        ValueRules::Integer {
            min: Some(min),
            max: Some(max),
        } => min.value > max.value,
        _ => false,
    };
    if empty {
        return Err(RuleError::new(
            field,
            "the bounds leave no value (exclusive ranges are not enforced by the gateway)",
        ));
    }
    Ok(rules)
}

/// Refuses the rules of `kind` found beyond those `enforced`.
fn only<'n>(
    field: &FieldDescriptor,
    kind: &str,
    enforced: &[&str],
    found: impl IntoIterator<Item = &'n String>,
) -> Result<(), RuleError> {
    match found
        .into_iter()
        .find(|name| !enforced.contains(&name.as_str()))
    {
        Some(name) => Err(RuleError::new(
            field,
            format!("rule {kind}.{name} is not enforced by the gateway"),
        )),
        None => Ok(()),
    }
}

/// An integer scalar as `i128`, which holds every `int64` and `uint64`.
fn as_integer(value: &Value) -> Option<i128> {
    match value {
        Value::I32(n) => Some(i128::from(*n)),
        Value::I64(n) => Some(i128::from(*n)),
        Value::U32(n) => Some(i128::from(*n)),
        Value::U64(n) => Some(i128::from(*n)),
        _ => None,
    }
}

/// One broken rule, as the end of a sentence about the field and the rule's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `must be at most 100 characters`.
    pub text: String,
    /// `string.max_len`.
    pub rule: String,
}

/// A field's value as the rules read it, decoded from the wire: what [`ValueRules::check`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// A `string`.
    String(&'a str),
    /// An integer of any width and encoding (an `i128` holds every `int64` and `uint64`).
    Integer(i128),
    /// An enum's number.
    EnumNumber(i32),
    /// How many items a repeated or map field holds.
    Items(u64),
    /// A `bool`, `float`, `double`, `bytes` or message: no rule reads its value.
    Other,
}

impl ValueRules {
    /// The first rule `value` (the field's value, or its number of items) breaks. A transcoder
    /// that does not encode a whole message can call this field by field.
    pub fn check(&self, field: &FieldDescriptor, value: FieldValue<'_>) -> Option<Violation> {
        let broken = |text: String, rule: &str| {
            Some(Violation {
                text,
                rule: rule.to_owned(),
            })
        };
        match (self, value) {
            (
                ValueRules::String {
                    len_min,
                    len_max,
                    pattern,
                },
                FieldValue::String(text),
            ) => {
                let len = text.chars().count() as u64;
                if let Some(min) = len_min.filter(|min| len < *min) {
                    return broken(
                        format!("must be at least {min} {}", plural(min, "character")),
                        "string.min_len",
                    );
                }
                if let Some(max) = len_max.filter(|max| len > *max) {
                    return broken(
                        format!("must be at most {max} {}", plural(max, "character")),
                        "string.max_len",
                    );
                }
                match pattern {
                    Some(pattern) if !pattern.regex.is_match(text) => broken(
                        format!("must match the pattern {:?}", pattern.source),
                        "string.pattern",
                    ),
                    _ => None,
                }
            }
            (ValueRules::Integer { min, max }, FieldValue::Integer(number)) => {
                if let Some(min) = min.as_ref().filter(|min| number < min.value) {
                    return broken(format!("must be at least {}", min.value), &min.rule);
                }
                match max.as_ref().filter(|max| number > max.value) {
                    Some(max) => broken(format!("must be at most {}", max.value), &max.rule),
                    None => None,
                }
            }
            (ValueRules::EnumDefinedOnly, FieldValue::EnumNumber(number)) => match field.kind() {
                Kind::Enum(descriptor) if descriptor.get_value(number).is_none() => broken(
                    format!("must be a value of {}", descriptor.full_name()),
                    "enum.defined_only",
                ),
                _ => None,
            },
            (
                ValueRules::Repeated {
                    items_min,
                    items_max,
                },
                FieldValue::Items(count),
            ) => {
                if let Some(min) = items_min.filter(|min| count < *min) {
                    return broken(
                        format!("must have at least {min} {}", plural(min, "item")),
                        "repeated.min_items",
                    );
                }
                match items_max.filter(|max| count > *max) {
                    Some(max) => broken(
                        format!("must have at most {max} {}", plural(max, "item")),
                        "repeated.max_items",
                    ),
                    None => None,
                }
            }
            _ => None,
        }
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        noun.to_owned()
    } else {
        format!("{noun}s")
    }
}

/// The checks of one message type.
#[derive(Debug)]
struct MessagePlan {
    /// In field order, which is the order of the violations.
    fields: Vec<FieldPlan>,
    /// What a field number on the wire is to the plan; the wire's other numbers are skipped.
    numbers: BTreeMap<u32, NumberPlan>,
    /// How many oneofs have a member in `fields`.
    oneofs: usize,
}

/// What one field number is to a message's plan: a field to check, a member of a oneof one
/// checked field belongs to (whose occurrence unsets the others), or both.
#[derive(Debug, Clone, Copy, Default)]
struct NumberPlan {
    /// Index into `fields`.
    field: Option<usize>,
    /// The oneof, as an index among the plan's `oneofs`.
    oneof: Option<usize>,
}

impl MessagePlan {
    /// The plan of `fields`, indexed by field number, with the oneofs they are members of.
    fn new(mut fields: Vec<FieldPlan>) -> Self {
        let mut numbers = BTreeMap::<u32, NumberPlan>::new();
        let mut oneofs: Vec<String> = Vec::new();
        for (index, check) in fields.iter_mut().enumerate() {
            numbers.entry(check.number).or_default().field = Some(index);
            let Some(oneof) = check.field.containing_oneof() else {
                continue;
            };
            let slot = match oneofs.iter().position(|name| name == oneof.full_name()) {
                Some(slot) => slot,
                None => {
                    // Every member, checked or not: any of them occurring unsets the others.
                    for member in oneof.fields() {
                        numbers.entry(member.number()).or_default().oneof = Some(oneofs.len());
                    }
                    oneofs.push(oneof.full_name().to_owned());
                    oneofs.len() - 1
                }
            };
            check.oneof = Some(slot);
        }
        Self {
            fields,
            numbers,
            oneofs: oneofs.len(),
        }
    }
}

/// One field to check: its rules, the plan of its message when it is one with checks, and how
/// to read it from the wire.
#[derive(Debug)]
struct FieldPlan {
    field: FieldDescriptor,
    rules: Arc<FieldRules>,
    nested: Option<usize>,
    number: u32,
    encoding: Encoding,
    /// A repeated or map field: every occurrence holds items.
    many: bool,
    /// It tracks presence: it is set when it occurs, rather than when it is not its zero value.
    presence: bool,
    /// Its oneof, as an index among the message plan's `oneofs`.
    oneof: Option<usize>,
}

impl FieldPlan {
    fn new(field: FieldDescriptor, rules: Arc<FieldRules>, nested: Option<usize>) -> Self {
        Self {
            number: field.number(),
            encoding: Encoding::of(&field.kind()),
            many: field.is_list() || field.is_map(),
            presence: field.supports_presence(),
            oneof: None,
            field,
            rules,
            nested,
        }
    }
}

/// A field's type as it lies on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// `int32`: a varint of the value sign-extended to 64 bits.
    Int32,
    Int64,
    Uint32,
    Uint64,
    /// `sint32`, `sint64`: zigzag varints.
    Sint32,
    Sint64,
    Bool,
    Enum,
    Fixed32,
    Sfixed32,
    Float,
    Fixed64,
    Sfixed64,
    Double,
    String,
    Bytes,
    /// A message, a group, or a map's entry.
    Message,
}

impl Encoding {
    fn of(kind: &Kind) -> Self {
        match kind {
            Kind::Int32 => Self::Int32,
            Kind::Int64 => Self::Int64,
            Kind::Uint32 => Self::Uint32,
            Kind::Uint64 => Self::Uint64,
            Kind::Sint32 => Self::Sint32,
            Kind::Sint64 => Self::Sint64,
            Kind::Bool => Self::Bool,
            Kind::Enum(_) => Self::Enum,
            Kind::Fixed32 => Self::Fixed32,
            Kind::Sfixed32 => Self::Sfixed32,
            Kind::Float => Self::Float,
            Kind::Fixed64 => Self::Fixed64,
            Kind::Sfixed64 => Self::Sfixed64,
            Kind::Double => Self::Double,
            Kind::String => Self::String,
            Kind::Bytes => Self::Bytes,
            Kind::Message(_) => Self::Message,
        }
    }

    /// The value of a field without presence that does not occur.
    fn zero(self) -> FieldValue<'static> {
        match self {
            Self::String => FieldValue::String(""),
            Self::Enum => FieldValue::EnumNumber(0),
            Self::Bool | Self::Float | Self::Double | Self::Bytes | Self::Message => {
                FieldValue::Other
            }
            _integer => FieldValue::Integer(0),
        }
    }

    /// One value of this type, and whether it is the type's zero value.
    fn decode(self, raw: Raw<'_>) -> Result<(FieldValue<'_>, bool), WireError> {
        use FieldValue::{EnumNumber, Integer, Other};
        // Casts between integers of one width reinterpret the bits, as protobuf decoding does;
        // a narrowing cast keeps the low bits (an `int32` is sign-extended to 64 on the wire).
        let value = match (self, raw) {
            (Self::Int32, Raw::Varint(n)) => Integer(i128::from(n as i32)),
            (Self::Int64, Raw::Varint(n)) => Integer(i128::from(n as i64)),
            (Self::Uint32, Raw::Varint(n)) => Integer(i128::from(n as u32)),
            (Self::Uint64, Raw::Varint(n)) => Integer(i128::from(n)),
            (Self::Sint32, Raw::Varint(n)) => {
                let n = n as u32;
                Integer(i128::from((n >> 1) as i32 ^ -((n & 1) as i32)))
            }
            (Self::Sint64, Raw::Varint(n)) => {
                Integer(i128::from((n >> 1) as i64 ^ -((n & 1) as i64)))
            }
            (Self::Enum, Raw::Varint(n)) => EnumNumber(n as i32),
            (Self::Bool, Raw::Varint(n)) => return Ok((Other, n == 0)),
            (Self::Fixed32, Raw::Fixed32(n)) => Integer(i128::from(n)),
            (Self::Sfixed32, Raw::Fixed32(n)) => Integer(i128::from(n as i32)),
            (Self::Float, Raw::Fixed32(n)) => return Ok((Other, f32::from_bits(n) == 0.0)),
            (Self::Fixed64, Raw::Fixed64(n)) => Integer(i128::from(n)),
            (Self::Sfixed64, Raw::Fixed64(n)) => Integer(i128::from(n as i64)),
            (Self::Double, Raw::Fixed64(n)) => return Ok((Other, f64::from_bits(n) == 0.0)),
            (Self::String, Raw::Delimited(bytes)) => FieldValue::String(
                std::str::from_utf8(bytes).map_err(|_| WireError("a string that is not UTF-8"))?,
            ),
            (Self::Bytes, Raw::Delimited(bytes)) => return Ok((Other, bytes.is_empty())),
            (Self::Message, Raw::Delimited(_) | Raw::Group(_)) => return Ok((Other, false)),
            _ => return Err(WireError("a wire type that does not fit the field's type")),
        };
        Ok((value, value == self.zero()))
    }

    /// How many items one occurrence of a repeated field of this type holds: one, or any number
    /// when numbers are packed into one length-delimited value.
    fn items(self, raw: Raw<'_>) -> Result<u64, WireError> {
        let packed = match raw {
            Raw::Delimited(packed)
                if !matches!(self, Self::String | Self::Bytes | Self::Message) =>
            {
                packed
            }
            one => {
                self.decode(one)?;
                return Ok(1);
            }
        };
        let width = match self {
            Self::Fixed32 | Self::Sfixed32 | Self::Float => 4,
            Self::Fixed64 | Self::Sfixed64 | Self::Double => 8,
            _varint => {
                let mut reader = Reader::new(packed);
                let mut count = 0;
                while !reader.is_empty() {
                    reader.varint()?;
                    count += 1;
                }
                return Ok(count);
            }
        };
        if packed.len() % width != 0 {
            return Err(WireError("a packed list that ends inside a value"));
        }
        Ok((packed.len() / width) as u64)
    }
}

/// What the wire holds of one checked field, gathered occurrence by occurrence.
#[derive(Debug, Clone, Default)]
struct Occurrences<'w> {
    /// Whether the field occurred (a oneof member: since another member of its oneof last did).
    any: bool,
    /// A singular scalar's value (the last occurrence's), and whether it is its zero value.
    last: Option<(FieldValue<'w>, bool)>,
    /// A singular message's occurrences: their concatenation is the message they merge into.
    parts: Vec<&'w [u8]>,
    /// A repeated or map field's items, over every occurrence.
    items: u64,
}

impl<'w> Occurrences<'w> {
    fn add(&mut self, check: &FieldPlan, raw: Raw<'w>) -> Result<(), WireError> {
        self.any = true;
        match (check.many, check.encoding, raw) {
            (true, encoding, raw) => self.items += encoding.items(raw)?,
            (false, Encoding::Message, Raw::Delimited(part) | Raw::Group(part)) => {
                self.parts.push(part);
            }
            (false, encoding, raw) => self.last = Some(encoding.decode(raw)?),
        }
        Ok(())
    }
}

/// The validation plans of every route's request message, and the rules of every field they
/// reach, compiled once at start-up.
#[derive(Debug, Default)]
pub struct Validation {
    /// Plans of the messages with at least one check (directly or in a nested message).
    plans: Vec<MessagePlan>,
    /// Index into `plans`, by message full name.
    by_message: BTreeMap<String, usize>,
    /// The rules of every field of every message reachable from a request, by field full name.
    rules: BTreeMap<String, Arc<FieldRules>>,
}

/// A request that breaks its message's rules: a 400 naming each field and rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// One sentence per broken rule, in field order.
    pub violations: Vec<String>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.violations.join("; "))
    }
}

impl Validation {
    /// Compiles the plans of every route's request message.
    pub fn compile(routes: &RouteTable) -> Result<Self, RuleError> {
        let mut compiler = Compiler::default();
        for route in routes.routes() {
            compiler.message(&route.input())?;
        }
        Ok(compiler.validation)
    }

    /// The rules of `field` (none for a field without rules, or one no request carries); the
    /// OpenAPI document reads them here.
    pub fn rules(&self, field: &FieldDescriptor) -> &FieldRules {
        static NONE: FieldRules = FieldRules {
            required: false,
            value: None,
        };
        self.rules.get(field.full_name()).map_or(&NONE, Arc::as_ref)
    }

    /// Checks the encoded request of `route` (its protobuf wire bytes), read as protobuf parsers
    /// read them: a singular field's last occurrence wins, a singular message's occurrences merge,
    /// a list's items are those of every occurrence (packed or not), a oneof member is set only
    /// when it is the last of its oneof to occur, and unknown fields are skipped. So a transcoder
    /// may append query parameters and path variables to the body's encoding.
    ///
    /// Only what the rules need is decoded. Bytes that cannot be read (cut short, a string that
    /// is not UTF-8) are refused with one violation naming where, never a panic.
    pub fn check(&self, route: &Route, wire: &[u8]) -> Result<(), Invalid> {
        let Some(&plan) = self.by_message.get(route.input().full_name()) else {
            return Ok(());
        };
        let mut found = Vec::new();
        let mut path = Vec::new();
        if let Err(error) = self.check_message(plan, wire, &mut path, &mut found) {
            // `path` was left at the message or field that could not be read.
            let whose = match path.as_slice() {
                [] => "the request".to_owned(),
                path => client_name(route, path),
            };
            return Err(Invalid {
                violations: vec![format!("{whose} is {error}")],
            });
        }
        if found.is_empty() {
            return Ok(());
        }
        let violations = found
            .into_iter()
            .map(|(path, broken)| {
                format!(
                    "{} {} ({})",
                    client_name(route, &path),
                    broken.text,
                    broken.rule
                )
            })
            .collect();
        Err(Invalid { violations })
    }

    /// Reads the fields of `plan` from `wire`, then checks them in plan order, nested messages
    /// depth first. When `wire` cannot be read, `path` is left where it could not.
    fn check_message(
        &self,
        plan: usize,
        wire: &[u8],
        path: &mut Vec<FieldDescriptor>,
        found: &mut Vec<(Vec<FieldDescriptor>, Violation)>,
    ) -> Result<(), WireError> {
        let plan = &self.plans[plan];
        let mut occurrences = vec![Occurrences::default(); plan.fields.len()];
        // The number of the member of each oneof that occurred last.
        let mut oneof_last: Vec<Option<u32>> = vec![None; plan.oneofs];
        let mut reader = Reader::new(wire);
        while let Some((number, raw)) = reader.field()? {
            let Some(known) = plan.numbers.get(&number) else {
                continue;
            };
            if let Some(slot) = known.oneof {
                if oneof_last[slot] != Some(number)
                    && let Some(index) = known.field
                {
                    // Another member was set since this one last occurred: it starts afresh.
                    occurrences[index] = Occurrences::default();
                }
                oneof_last[slot] = Some(number);
            }
            if let Some(index) = known.field {
                let check = &plan.fields[index];
                if let Err(error) = occurrences[index].add(check, raw) {
                    path.push(check.field.clone());
                    return Err(error);
                }
            }
        }
        for (check, seen) in plan.fields.iter().zip(&occurrences) {
            let set = if check.presence {
                seen.any
                    && check
                        .oneof
                        .is_none_or(|slot| oneof_last[slot] == Some(check.number))
            } else if check.many {
                seen.items > 0
            } else {
                seen.last.is_some_and(|(_, zero)| !zero)
            };
            path.push(check.field.clone());
            if !set && check.rules.required {
                let required = Violation {
                    text: "is required".to_owned(),
                    rule: "required".to_owned(),
                };
                found.push((path.clone(), required));
            } else if set || !check.presence {
                let value = if check.many {
                    FieldValue::Items(seen.items)
                } else {
                    seen.last.map_or(check.encoding.zero(), |(value, _)| value)
                };
                if let Some(broken) = check
                    .rules
                    .value
                    .as_ref()
                    .and_then(|rules| rules.check(&check.field, value))
                {
                    found.push((path.clone(), broken));
                }
                if let Some(nested) = check.nested
                    && set
                {
                    match seen.parts.as_slice() {
                        [whole] => self.check_message(nested, whole, path, found)?,
                        parts => self.check_message(nested, &parts.concat(), path, found)?,
                    }
                }
            }
            path.pop();
        }
        Ok(())
    }
}

/// How the client named a field: the path variable that binds it, the body field (JSON name,
/// relative to the body), or the query parameter (`.proto` name, as the OpenAPI document lists
/// query parameters).
fn client_name(route: &Route, path: &[FieldDescriptor]) -> String {
    let proto_names: Vec<&str> = path.iter().map(FieldDescriptor::name).collect();
    let bound_by_path = route.template.variable_paths().any(|bound| {
        bound
            .iter()
            .map(String::as_str)
            .eq(proto_names.iter().copied())
    });
    let json_names = |fields: &[FieldDescriptor]| {
        fields
            .iter()
            .map(FieldDescriptor::json_name)
            .collect::<Vec<_>>()
            .join(".")
    };
    if bound_by_path {
        return format!("path variable {:?}", proto_names.join("."));
    }
    match route.request.body() {
        BodyMapping::Whole => format!("body field {:?}", json_names(path)),
        BodyMapping::Field(body) if path.first() == Some(body) => match &path[1..] {
            [] => "the request body".to_owned(),
            inner => format!("body field {:?}", json_names(inner)),
        },
        _ => format!("query parameter {:?}", proto_names.join(".")),
    }
}

/// Builds the plans, one per message type, following message fields.
#[derive(Default)]
struct Compiler {
    validation: Validation,
    /// Messages seen, with the plan index when they have checks (`None`: nothing to check).
    seen: BTreeMap<String, Option<usize>>,
    /// Messages whose plan is being built; meeting one again is a recursive type.
    building: Vec<String>,
}

impl Compiler {
    /// The plan index of `message`, or `None` when nothing in it has a rule.
    fn message(&mut self, message: &MessageDescriptor) -> Result<Option<usize>, RuleError> {
        let name = message.full_name().to_owned();
        if let Some(known) = self.seen.get(&name) {
            return Ok(*known);
        }
        if self.building.contains(&name) {
            // A recursive type (google.protobuf.Struct and Value are one). Fine without rules;
            // with rules anywhere on the cycle, the message that has them refuses below.
            return Ok(None);
        }
        self.building.push(name.clone());
        let mut fields = Vec::new();
        for field in message.fields() {
            let rules = Arc::new(FieldRules::read(&field)?);
            let nested = match field.kind() {
                Kind::Message(inner) if !field.is_list() && !field.is_map() => {
                    self.message(&inner)?
                }
                Kind::Message(inner) => {
                    // Rules inside lists and maps of messages would need an item path in
                    // messages; refuse them rather than skip them.
                    if self.message(&inner)?.is_some() {
                        return Err(RuleError::new(
                            &field,
                            "rules inside repeated or map message fields are not enforced by the gateway",
                        ));
                    }
                    None
                }
                _ => None,
            };
            let has_rules = rules.required || rules.value.is_some();
            if has_rules {
                self.validation
                    .rules
                    .insert(field.full_name().to_owned(), rules.clone());
            }
            if has_rules || nested.is_some() {
                fields.push(FieldPlan::new(field, rules, nested));
            }
        }
        self.building.pop();
        let plan = MessagePlan::new(fields);
        let index = if plan.fields.is_empty() {
            None
        } else {
            if self.recursive_reference(message) {
                return Err(RuleError {
                    field: name,
                    reason: "rules in a recursive message type are not enforced by the gateway"
                        .to_owned(),
                });
            }
            self.validation.plans.push(plan);
            let index = self.validation.plans.len() - 1;
            self.validation.by_message.insert(name.clone(), index);
            Some(index)
        };
        self.seen.insert(name, index);
        Ok(index)
    }

    /// Whether `message` reaches itself through message fields.
    fn recursive_reference(&self, message: &MessageDescriptor) -> bool {
        let mut stack = vec![message.clone()];
        let mut visited: Vec<String> = Vec::new();
        while let Some(current) = stack.pop() {
            for field in current.fields() {
                if let Kind::Message(inner) = field.kind() {
                    if inner.full_name() == message.full_name() {
                        return true;
                    }
                    if !visited.iter().any(|seen| seen == inner.full_name()) {
                        visited.push(inner.full_name().to_owned());
                        stack.push(inner);
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use prost_reflect::DescriptorPool;
    use protox::file::{
        ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
    };

    use super::*;
    use crate::{routing::RouteLookup, transcode};

    /// `test.proto`, given as text.
    struct Inline(String);

    impl FileResolver for Inline {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            match name {
                "test.proto" => File::from_source(name, &self.0),
                _ => Err(protox::Error::file_not_found(name)),
            }
        }
    }

    /// Compiles `file` (`test.proto` is `inline`) with the project's annotation protos, or with
    /// a `buf/validate/validate.proto` that defines a rule the gateway does not enforce.
    fn pool(file: &str, inline: &str, wider: bool) -> DescriptorPool {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut resolver = ChainFileResolver::new();
        resolver.add(Inline(inline.to_owned()));
        if wider {
            resolver.add(IncludeFileResolver::new(here.join("tests/protos/wider")));
        }
        resolver.add(IncludeFileResolver::new(here.join("tests/protos")));
        resolver.add(IncludeFileResolver::new(here.join("../proto/proto")));
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler
            .include_imports(true)
            .open_files([file])
            .expect("the test proto compiles");
        compiler.descriptor_pool()
    }

    fn rules_table() -> RouteTable {
        RouteTable::from_pool(&pool("rules.proto", "", false), &[]).expect("valid routes")
    }

    /// What validation says about a request, after transcoding it as the proxy does.
    fn check(table: &RouteTable, method: http::Method, uri: &str, body: &str) -> Vec<String> {
        let validation = Validation::compile(table).expect("enforceable rules");
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let RouteLookup::Found(route, captures) = table.lookup(&method, path) else {
            panic!("{method} {path} has no route");
        };
        let request =
            transcode::build_request(&route.request, &captures, Some(query), body.as_bytes())
                .expect("the request transcodes");
        match validation.check(&route, &request) {
            Ok(()) => Vec::new(),
            Err(invalid) => invalid.violations,
        }
    }

    /// A `test.proto` whose request, routed as `POST /api/test` with the whole body, has
    /// `fields`.
    fn inline_source(fields: &str) -> String {
        format!(
            r#"syntax = "proto3";
            package test.v1;
            import "buf/validate/validate.proto";
            import "google/api/annotations.proto";
            import "google/protobuf/struct.proto";
            service TestService {{
              rpc Call(CallRequest) returns (CallResponse) {{
                option (google.api.http) = {{post: "/api/test" body: "*"}};
              }}
            }}
            enum Shade {{ SHADE_UNSPECIFIED = 0; SHADE_DARK = 1; }}
            message Node {{ Node child = 1; string label = 2 [(buf.validate.field).string.min_len = 1]; }}
            message Tagged {{ string tag = 1 [(buf.validate.field).string.max_len = 3]; }}
            message CallRequest {{ {fields} }}
            message CallResponse {{}}"#
        )
    }

    fn inline_table(fields: &str, wider: bool) -> RouteTable {
        RouteTable::from_pool(&pool("test.proto", &inline_source(fields), wider), &[])
            .expect("valid routes")
    }

    /// A `test.proto` with one request field, routed, and what compiling its rules says.
    fn compile_field(field: &str, wider: bool) -> Result<Validation, RuleError> {
        Validation::compile(&inline_table(field, wider))
    }

    fn refusal(field: &str, wider: bool) -> String {
        compile_field(field, wider)
            .expect_err("start-up must refuse these rules")
            .to_string()
    }

    #[test]
    fn a_request_within_every_rule_passes() {
        let table = rules_table();
        let body = r#"{"name":"abc","note":"long enough","count":"10","size":7,
            "tags":["a","b"],"inner":{"code":"x"},"weight":"1","color":"COLOR_RED"}"#;
        let uri = "/api/rules/abcd:check?page_size=99";
        assert_eq!(
            check(&table, http::Method::POST, uri, body),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_broken_rule_is_named_with_its_field_and_rule() {
        let table = rules_table();
        let body = r#"{"name":"A","note":"x","count":"0","size":8,"tags":["a","b","c"],
            "inner":{"code":""},"weight":"0","color":7}"#;
        let uri = "/api/rules/abcde:check?page_size=100";
        assert_eq!(
            check(&table, http::Method::POST, uri, body),
            [
                r#"path variable "id" must be at most 4 characters (string.max_len)"#,
                r#"body field "name" must be at least 2 characters (string.min_len)"#,
                r#"body field "note" must be at least 3 characters (string.min_len)"#,
                r#"body field "count" must be at least 1 (int64.gt)"#,
                r#"body field "size" must be at most 7 (uint32.lte)"#,
                r#"body field "tags" must have at most 2 items (repeated.max_items)"#,
                r#"body field "inner.code" must be at least 1 character (string.min_len)"#,
                r#"body field "weight" is required (required)"#,
                r#"body field "color" must be a value of rules.v1.Color (enum.defined_only)"#,
                r#"query parameter "page_size" must be at most 99 (int32.lt)"#,
            ]
        );
    }

    #[test]
    fn patterns_match_anywhere_unless_anchored() {
        let table = rules_table();
        let body = |name: &str| format!(r#"{{"name":"{name}","count":"1","weight":"1"}}"#);
        let uri = "/api/rules/a:check";
        assert_eq!(
            check(&table, http::Method::POST, uri, &body("abC")),
            [r#"body field "name" must match the pattern "^[a-z]+$" (string.pattern)"#]
        );
        assert!(check(&table, http::Method::POST, uri, &body("abc")).is_empty());
    }

    #[test]
    fn rules_of_unset_fields_that_track_presence_are_skipped() {
        let table = rules_table();
        // No `note` (optional) and no `inner` (a message): their rules do not apply. `count`
        // has no presence, so its zero value is checked, and `name` is required.
        assert_eq!(
            check(&table, http::Method::POST, "/api/rules/a:check", "{}"),
            [
                r#"body field "name" is required (required)"#,
                r#"body field "count" must be at least 1 (int64.gt)"#,
                r#"body field "weight" is required (required)"#,
            ]
        );
    }

    #[test]
    fn a_required_body_field_left_out_is_the_request_body() {
        let table = rules_table();
        assert_eq!(
            check(&table, http::Method::POST, "/api/rules/a:check", ""),
            [r#"the request body is required (required)"#]
        );
    }

    #[test]
    fn a_whole_body_names_fields_by_json_name_and_bound_fields_by_variable() {
        let table = rules_table();
        let body = r#"{"count":"11","weight":"2"}"#;
        assert_eq!(
            check(&table, http::Method::PUT, "/api/rules/Ab", body),
            [
                r#"path variable "name" must match the pattern "^[a-z]+$" (string.pattern)"#,
                r#"body field "count" must be at most 10 (int64.lte)"#,
            ]
        );
    }

    #[test]
    fn a_field_inside_a_message_is_named_by_the_path_variable_that_binds_it() {
        let table = rules_table();
        assert_eq!(
            check(
                &table,
                http::Method::POST,
                "/api/rules/Ab:rename",
                r#"{"id":"12345"}"#
            ),
            [
                r#"body field "id" must be at most 4 characters (string.max_len)"#,
                r#"path variable "item.name" must match the pattern "^[a-z]+$" (string.pattern)"#,
                r#"body field "item.count" must be at least 1 (int64.gt)"#,
                r#"body field "item.weight" is required (required)"#,
            ]
        );
    }

    #[test]
    fn absence_is_admitted_where_the_rules_let_the_zero_value_pass() {
        let pool = pool("rules.proto", "", false);
        let validation = Validation::compile(&rules_table()).unwrap();
        let item = pool.get_message_by_name("rules.v1.Item").unwrap();
        let admitted: Vec<String> = item
            .fields()
            .filter(|field| validation.rules(field).admits_absence(field))
            .map(|field| field.name().to_owned())
            .collect();
        // Not `name` and `weight` (required), nor `count` (its zero value breaks `gt: 0`).
        assert_eq!(admitted, ["note", "size", "tags", "inner", "color"]);
    }

    #[test]
    fn rules_the_gateway_would_not_enforce_stop_start_up() {
        let email = refusal(
            r#"string address = 1 [(buf.validate.field).string.email = true];"#,
            true,
        );
        assert!(email.contains("string.email is not enforced"), "{email}");
        let mismatch = refusal(
            r#"int32 count = 1 [(buf.validate.field).string.max_len = 3];"#,
            false,
        );
        assert!(
            mismatch.contains("does not fit the field's type"),
            "{mismatch}"
        );
        let empty = refusal(
            r#"int32 count = 1 [(buf.validate.field).int32 = {gt: 5, lt: 3}];"#,
            false,
        );
        assert!(empty.contains("leave no value"), "{empty}");
        let regex = refusal(
            r#"string name = 1 [(buf.validate.field).string.pattern = "("];"#,
            false,
        );
        assert!(regex.contains("does not compile"), "{regex}");
        let in_list = refusal("repeated Tagged tags = 1;", false);
        assert!(in_list.contains("repeated or map"), "{in_list}");
        let recursive = refusal("Node root = 1;", false);
        assert!(recursive.contains("recursive"), "{recursive}");
    }

    #[test]
    fn recursive_types_without_rules_are_fine() {
        assert!(compile_field("google.protobuf.Struct attributes = 1;", false).is_ok());
    }

    #[test]
    fn the_contracts_rules_compile() {
        let routes =
            RouteTable::from_pool(&crate::app::builtin_descriptors(), &[]).expect("valid routes");
        let validation = Validation::compile(&routes).expect("enforceable rules");
        let pool = crate::app::builtin_descriptors();
        let name = pool
            .get_message_by_name("project.v1.NewProject")
            .and_then(|message| message.get_field_by_name("name"))
            .expect("NewProject.name");
        let rules = validation.rules(&name);
        assert!(rules.required);
        // The pattern keeps the White_Space characters the Project service trims.
        let Some(ValueRules::String {
            pattern: Some(pattern),
            ..
        }) = &rules.value
        else {
            panic!("NewProject.name has a pattern: {rules:?}");
        };
        for blank in [" ", "\t\n", "\u{85}", "\u{a0}\u{3000}", "\u{2028}\u{202f}"] {
            assert!(!pattern.regex.is_match(blank), "{blank:?} is blank");
            assert_eq!(blank.trim(), "", "the Project service trims {blank:?}");
        }
        for named in ["x", " x ", "\u{1c}", "\u{feff}", "\u{200b}"] {
            assert!(pattern.regex.is_match(named), "{named:?} has a name");
            assert_ne!(named.trim(), "", "the Project service keeps {named:?}");
        }
    }

    /// What validation says about `wire` sent as the request of `path`.
    fn check_wire(
        table: &RouteTable,
        method: http::Method,
        path: &str,
        wire: &[u8],
    ) -> Vec<String> {
        let validation = Validation::compile(table).expect("enforceable rules");
        let RouteLookup::Found(route, _) = table.lookup(&method, path) else {
            panic!("{method} {path} has no route");
        };
        match validation.check(&route, wire) {
            Ok(()) => Vec::new(),
            Err(invalid) => invalid.violations,
        }
    }

    /// Field `number` as a varint.
    fn varint(number: u32, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::uint64::encode(number, &value, &mut out);
        out
    }

    /// Field `number` as a length-delimited value: a string, a message or a packed list.
    fn delimited(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::bytes::encode(number, &payload.to_vec(), &mut out);
        out
    }

    #[test]
    fn the_last_occurrence_of_a_field_wins() {
        let table = inline_table(
            "string name = 1 [(buf.validate.field).string.min_len = 2];
             int32 size = 2 [(buf.validate.field).int32.gt = 0];",
            false,
        );
        let post =
            |wire: &[Vec<u8>]| check_wire(&table, http::Method::POST, "/api/test", &wire.concat());
        let size_one = varint(2, 1);
        assert!(post(&[delimited(1, b""), delimited(1, b"ab"), size_one.clone()]).is_empty());
        assert_eq!(
            post(&[delimited(1, b"ab"), delimited(1, b""), size_one.clone()]),
            [r#"body field "name" must be at least 2 characters (string.min_len)"#]
        );
        assert_eq!(
            post(&[delimited(1, b"ab"), varint(2, 5), varint(2, 0)]),
            [r#"body field "size" must be at least 1 (int32.gt)"#]
        );
        // An int32 is sign-extended to ten bytes on the wire; -1 is not a large positive number.
        assert_eq!(
            post(&[delimited(1, b"ab"), varint(2, -1_i64 as u64)]),
            [r#"body field "size" must be at least 1 (int32.gt)"#]
        );
        // Unknown field numbers are skipped.
        assert!(
            post(&[
                varint(99, 7),
                delimited(1, b"ab"),
                size_one,
                delimited(98, b"?")
            ])
            .is_empty()
        );
    }

    #[test]
    fn the_occurrences_of_a_message_merge() {
        let table = rules_table();
        let post = |wire: &[Vec<u8>]| {
            check_wire(
                &table,
                http::Method::POST,
                "/api/rules/a:check",
                &wire.concat(),
            )
        };
        let named = [delimited(1, b"abc"), varint(3, 1)].concat();
        let weighed = varint(7, 1);
        assert_eq!(
            post(&[delimited(2, &named)]),
            [r#"body field "weight" is required (required)"#]
        );
        assert!(post(&[delimited(2, &named), delimited(2, &weighed)]).is_empty());
        // Inside merged messages too, a later empty message keeps the code and a later empty
        // code replaces it.
        let coded = [
            named.as_slice(),
            &weighed,
            &delimited(6, &delimited(1, b"x")),
        ]
        .concat();
        assert!(post(&[delimited(2, &coded), delimited(2, &delimited(6, b""))]).is_empty());
        assert_eq!(
            post(&[
                delimited(2, &coded),
                delimited(2, &delimited(6, &delimited(1, b"")))
            ]),
            [r#"body field "inner.code" must be at least 1 character (string.min_len)"#]
        );
    }

    #[test]
    fn a_list_counts_the_items_of_every_occurrence_packed_or_not() {
        use prost::encoding::{fixed32, fixed64, int32};
        let table = inline_table(
            "repeated int32 ids = 1 [(buf.validate.field).repeated.max_items = 3];
             repeated fixed64 stamps = 2 [(buf.validate.field).repeated.max_items = 3];
             repeated fixed32 marks = 3 [(buf.validate.field).repeated.min_items = 2];
             repeated string tags = 4 [(buf.validate.field).repeated.max_items = 1];",
            false,
        );
        let mut within = Vec::new();
        int32::encode_packed(1, &[1, 300, -1], &mut within);
        fixed64::encode_packed(2, &[1, 2], &mut within);
        fixed64::encode(2, &3, &mut within);
        fixed32::encode(3, &4, &mut within);
        fixed32::encode_packed(3, &[5], &mut within);
        within.extend(delimited(4, b""));
        let post = |wire: &[u8]| check_wire(&table, http::Method::POST, "/api/test", wire);
        assert!(post(&within).is_empty());
        let mut beyond = within.clone();
        int32::encode(1, &7, &mut beyond);
        fixed64::encode_packed(2, &[4], &mut beyond);
        beyond.extend(delimited(4, b""));
        assert_eq!(
            post(&beyond),
            [
                r#"body field "ids" must have at most 3 items (repeated.max_items)"#,
                r#"body field "stamps" must have at most 3 items (repeated.max_items)"#,
                r#"body field "tags" must have at most 1 item (repeated.max_items)"#,
            ]
        );
        let mut short = Vec::new();
        fixed32::encode_packed(3, &[5], &mut short);
        assert_eq!(
            post(&short),
            [r#"body field "marks" must have at least 2 items (repeated.min_items)"#]
        );
        assert_eq!(
            post(&delimited(3, &[1, 2, 3])),
            [r#"body field "marks" is malformed protobuf: a packed list that ends inside a value"#]
        );
    }

    #[test]
    fn a_oneof_member_is_set_only_when_it_occurred_last_in_its_oneof() {
        let table = inline_table(
            "oneof choice {
               string name = 1 [(buf.validate.field).string.min_len = 3];
               int64 count = 2;
               Tagged tagged = 3;
             }",
            false,
        );
        let post =
            |wire: &[Vec<u8>]| check_wire(&table, http::Method::POST, "/api/test", &wire.concat());
        let short_name = [r#"body field "name" must be at least 3 characters (string.min_len)"#];
        assert!(post(&[delimited(1, b"ab"), varint(2, 5)]).is_empty());
        assert_eq!(post(&[varint(2, 5), delimited(1, b"ab")]), short_name);
        let long_tag = delimited(3, &delimited(1, b"long"));
        let no_tag = delimited(3, b"");
        assert!(post(&[long_tag.clone(), delimited(1, b"abc")]).is_empty());
        // Occurrences of a member merge, unless another member came in between.
        assert_eq!(
            post(&[long_tag.clone(), no_tag.clone()]),
            [r#"body field "tagged.tag" must be at most 3 characters (string.max_len)"#]
        );
        assert!(post(&[long_tag, varint(2, 1), no_tag]).is_empty());
    }

    #[test]
    fn scalars_decode_as_prost_reflect_encodes_them() {
        let fields = [
            "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64",
            "sfixed32", "sfixed64", "bool", "float", "double", "string", "bytes", "Shade",
        ]
        .iter()
        .enumerate()
        .map(|(at, kind)| format!("optional {kind} field_{} = {};", at + 1, at + 1))
        .collect::<String>();
        let pool = pool("test.proto", &inline_source(&fields), false);
        let request = pool.get_message_by_name("test.v1.CallRequest").unwrap();
        for field in request.fields() {
            let kind = field.kind();
            let samples = match kind {
                Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                    [i32::MIN, -1, 0, 1, i32::MAX].map(Value::I32).to_vec()
                }
                Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                    [i64::MIN, -1, 0, 1, i64::MAX].map(Value::I64).to_vec()
                }
                Kind::Uint32 | Kind::Fixed32 => [0, 1, u32::MAX].map(Value::U32).to_vec(),
                Kind::Uint64 | Kind::Fixed64 => [0, 1, u64::MAX].map(Value::U64).to_vec(),
                Kind::Bool => [false, true].map(Value::Bool).to_vec(),
                Kind::Float => [0.0, -0.0, 1.5, f32::NAN].map(Value::F32).to_vec(),
                Kind::Double => [0.0, -0.0, 1.5, f64::NAN].map(Value::F64).to_vec(),
                Kind::String => ["", "é"]
                    .map(|text| Value::String(text.to_owned()))
                    .to_vec(),
                Kind::Bytes => [&b""[..], b"x"]
                    .map(|bytes| Value::Bytes(bytes::Bytes::copy_from_slice(bytes)))
                    .to_vec(),
                Kind::Enum(_) => [0, 1, -3].map(Value::EnumNumber).to_vec(),
                Kind::Message(_) => unreachable!("no message fields here"),
            };
            for value in samples {
                let mut message = DynamicMessage::new(request.clone());
                message.set_field(&field, value.clone());
                let wire = prost::Message::encode_to_vec(&message);
                let (number, raw) = Reader::new(&wire).field().unwrap().unwrap();
                assert_eq!(number, field.number());
                let expected = match &value {
                    Value::String(text) => FieldValue::String(text),
                    Value::EnumNumber(number) => FieldValue::EnumNumber(*number),
                    other => as_integer(other).map_or(FieldValue::Other, FieldValue::Integer),
                };
                assert_eq!(
                    Encoding::of(&kind).decode(raw),
                    Ok((expected, value.is_default(&kind))),
                    "{} = {value:?}",
                    field.name()
                );
            }
        }
    }

    #[test]
    fn malformed_wire_is_invalid_not_a_panic() {
        let table = rules_table();
        let put = |wire: &[u8]| check_wire(&table, http::Method::PUT, "/api/rules/abc", wire);
        let post = |wire: &[u8]| check_wire(&table, http::Method::POST, "/api/rules/a:check", wire);
        assert_eq!(
            put(&[0x0a, 0x05, b'a']),
            ["the request is malformed protobuf: a value longer than what is left"]
        );
        assert_eq!(
            post(&delimited(2, &[0x0a, 0x05])),
            ["the request body is malformed protobuf: a value longer than what is left"]
        );
        assert_eq!(
            put(&delimited(1, &[0xff])),
            [r#"path variable "name" is malformed protobuf: a string that is not UTF-8"#]
        );
        assert_eq!(
            put(&varint(1, 5)),
            [
                r#"path variable "name" is malformed protobuf: a wire type that does not fit the field's type"#
            ]
        );
        // Every cut of a valid request is read without a panic, wherever it falls.
        let item = [
            delimited(1, b"abc"),
            delimited(2, b"note"),
            varint(3, 1),
            delimited(5, b"t"),
            delimited(6, &delimited(1, b"x")),
            varint(7, 1),
            varint(8, 1),
        ]
        .concat();
        let wire = [delimited(1, b"a"), delimited(2, &item), varint(3, 5)].concat();
        assert!(post(&wire).is_empty());
        for end in 0..wire.len() {
            post(&wire[..end]);
        }
    }
}
