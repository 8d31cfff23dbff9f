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
//! The plan works on the request message, not on its JSON, so any transcoder that builds the
//! message can use it ([`Validation::check`]), and one that does not can check field by field
//! ([`ValueRules::check`]). The OpenAPI document reads the same compiled rules
//! ([`Validation::rules`]), so what it promises is what the gateway checks.

use std::{collections::BTreeMap, fmt, sync::Arc};

use prost_reflect::{
    DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};
use regex::Regex;

use crate::routing::{BodyMapping, Route, RouteTable};

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
        let zero = Value::default_value_for_field(field);
        match &self.value {
            None => true,
            Some(rules) => rules.check(field, &zero).is_none(),
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

impl ValueRules {
    /// The first rule `value` (the field's value, or its list) breaks. A transcoder that does
    /// not build a whole message can call this field by field.
    pub fn check(&self, field: &FieldDescriptor, value: &Value) -> Option<Violation> {
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
                Value::String(text),
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
            (ValueRules::Integer { min, max }, value) => {
                let number = as_integer(value)?;
                if let Some(min) = min.as_ref().filter(|min| number < min.value) {
                    return broken(format!("must be at least {}", min.value), &min.rule);
                }
                match max.as_ref().filter(|max| number > max.value) {
                    Some(max) => broken(format!("must be at most {}", max.value), &max.rule),
                    None => None,
                }
            }
            (ValueRules::EnumDefinedOnly, Value::EnumNumber(number)) => match field.kind() {
                Kind::Enum(descriptor) if descriptor.get_value(*number).is_none() => broken(
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
                Value::List(items),
            ) => {
                let count = items.len() as u64;
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
#[derive(Debug, Default)]
struct MessagePlan {
    fields: Vec<FieldPlan>,
}

/// One field to check: its rules, and the plan of its message when it is one with checks.
#[derive(Debug)]
struct FieldPlan {
    field: FieldDescriptor,
    rules: Arc<FieldRules>,
    nested: Option<usize>,
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

    /// Checks a transcoded request of `route`.
    pub fn check(&self, route: &Route, request: &DynamicMessage) -> Result<(), Invalid> {
        let Some(&plan) = self.by_message.get(request.descriptor().full_name()) else {
            return Ok(());
        };
        let mut found = Vec::new();
        let mut path = Vec::new();
        self.check_message(plan, request, &mut path, &mut found);
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

    fn check_message(
        &self,
        plan: usize,
        message: &DynamicMessage,
        path: &mut Vec<FieldDescriptor>,
        found: &mut Vec<(Vec<FieldDescriptor>, Violation)>,
    ) {
        for check in &self.plans[plan].fields {
            let field = &check.field;
            let set = message.has_field(field);
            path.push(field.clone());
            if !set && check.rules.required {
                let required = Violation {
                    text: "is required".to_owned(),
                    rule: "required".to_owned(),
                };
                found.push((path.clone(), required));
            } else if set || !field.supports_presence() {
                let value = message.get_field(field);
                if let Some(broken) = check
                    .rules
                    .value
                    .as_ref()
                    .and_then(|rules| rules.check(field, &value))
                {
                    found.push((path.clone(), broken));
                }
                if let (Some(nested), Value::Message(inner)) = (check.nested, value.as_ref())
                    && set
                {
                    self.check_message(nested, inner, path, found);
                }
            }
            path.pop();
        }
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
    match &route.body {
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
        let mut plan = MessagePlan::default();
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
                plan.fields.push(FieldPlan {
                    field,
                    rules,
                    nested,
                });
            }
        }
        self.building.pop();
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
        let request = transcode::build_request(&route, &captures, Some(query), body.as_bytes())
            .expect("the request transcodes");
        match validation.check(&route, &request) {
            Ok(()) => Vec::new(),
            Err(invalid) => invalid.violations,
        }
    }

    /// A `test.proto` with one request field, routed, and what compiling its rules says.
    fn compile_field(field: &str, wider: bool) -> Result<Validation, RuleError> {
        let source = format!(
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
            message Node {{ Node child = 1; string label = 2 [(buf.validate.field).string.min_len = 1]; }}
            message Tagged {{ string tag = 1 [(buf.validate.field).string.max_len = 3]; }}
            message CallRequest {{ {field} }}
            message CallResponse {{}}"#
        );
        let routes =
            RouteTable::from_pool(&pool("test.proto", &source, wider), &[]).expect("valid routes");
        Validation::compile(&routes)
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
}
