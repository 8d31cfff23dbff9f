//! JSON ⇄ protobuf transcoding for one route, driven entirely by descriptors.
//!
//! A request message is built from three sources, in this order (later wins): the JSON body (the
//! whole message or one field of it, per the route's `body`), the query string (fields not bound by
//! the body), then the path variables. Answers are written from their wire bytes as canonical
//! proto3 JSON by [`Answer`], with no message built in between (see `to_json`).
//!
//! Policy for fields the message does not have: rejected with 400, in the body and in the query
//! string alike, so a typo never passes silently. See `docs/errors.md`.

mod plan;
mod to_json;
mod wire;

pub use plan::Plans;
pub use wire::WireError;

use std::sync::Arc;

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};

use crate::routing::{BodyMapping, Capture, Route, table::resolve_field_path};

/// Why a request cannot be turned into a gRPC message. Every variant is the client's mistake.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The body is not JSON, or not JSON of the request's shape.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// A query parameter names a field the request does not have.
    #[error("unknown query parameter {0:?}")]
    UnknownQueryParameter(String),
    /// A query parameter or path variable has a value its field cannot hold.
    #[error("invalid value for {field:?}: {reason}")]
    InvalidValue {
        /// The field, as the client named it.
        field: String,
        /// Why the value does not fit.
        reason: String,
    },
}

/// Why an answer could not be written as JSON: the backend sent bytes that are not its declared
/// type (a backend fault, answered 502).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the response as JSON: {0}")]
pub struct ResponseEncodeError(String);

/// Builds the gRPC request message for a matched route.
pub fn build_request(
    route: &Route,
    captures: &[Capture],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, TranscodeError> {
    let input = route.input();
    let mut message = match &route.body {
        BodyMapping::Whole => parse_json_message(&input, body)?,
        BodyMapping::Field(field) => {
            let mut message = DynamicMessage::new(input.clone());
            // An empty body leaves the field unset, so a required body (`PATCH
            // /api/projects/{id}`) is refused by validation rather than read as `{}`.
            if let Kind::Message(field_type) = field.kind()
                && !is_empty_body(body)
            {
                let value = parse_json_message(&field_type, body)?;
                message.set_field(field, Value::Message(value));
            }
            message
        }
        BodyMapping::None => DynamicMessage::new(input.clone()),
    };
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let path: Vec<String> = name.split('.').map(str::to_owned).collect();
            let field = resolve_field_path(&input, &path)
                .ok()
                .filter(|field| query_may_set(route, &path, field))
                .ok_or_else(|| TranscodeError::UnknownQueryParameter(name.to_string()))?;
            set_scalar(&mut message, &path, &field, &name, &value)?;
        }
    }
    for capture in captures {
        let field = resolve_field_path(&input, &capture.field_path).map_err(|reason| {
            // The table checked every variable at start-up; this is unreachable in practice but
            // still answered as a client error rather than a panic.
            TranscodeError::InvalidValue {
                field: capture.field_path.join("."),
                reason,
            }
        })?;
        let name = capture.field_path.join(".");
        set_scalar(
            &mut message,
            &capture.field_path,
            &field,
            &name,
            &capture.value,
        )?;
    }
    Ok(message)
}

/// How one route's gRPC answer becomes its JSON body: the compiled plan of the output type, and
/// the field to answer with when the route names a `response_body`.
#[derive(Debug, Clone)]
pub struct Answer {
    plans: Arc<Plans>,
    message: plan::MessageId,
    field: Option<u32>,
}

impl Answer {
    /// The answer of a method whose output type is `output`, whole or only `response_body`.
    pub fn new(
        plans: &Arc<Plans>,
        output: &MessageDescriptor,
        response_body: Option<&FieldDescriptor>,
    ) -> Self {
        let message = plans
            .id_of(output.full_name())
            .expect("the plans were compiled from the output type's pool");
        Self {
            plans: plans.clone(),
            message,
            field: response_body.map(FieldDescriptor::number),
        }
    }

    /// Writes an encoded gRPC answer as canonical proto3 JSON, with default values (so clients
    /// see a stable shape: `"roles": []` rather than no key); a malformed answer is an error.
    pub fn to_json(&self, wire: &[u8]) -> Result<Vec<u8>, ResponseEncodeError> {
        let mut out = Vec::with_capacity(wire.len() * 2 + 16);
        match self.field {
            None => to_json::write_message(&self.plans, self.message, wire, &mut out),
            Some(number) => to_json::write_field(&self.plans, self.message, number, wire, &mut out),
        }
        .map_err(|error| ResponseEncodeError(error.to_string()))?;
        Ok(out)
    }
}

/// A body of no bytes, or only white space, is no body.
fn is_empty_body(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// An empty body stands for `{}`: `POST /api/simulations/{id}:stop` needs no body.
fn parse_json_message(
    descriptor: &MessageDescriptor,
    body: &[u8],
) -> Result<DynamicMessage, TranscodeError> {
    if is_empty_body(body) {
        return Ok(DynamicMessage::new(descriptor.clone()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let message =
        DynamicMessage::deserialize_with_options(descriptor.clone(), &mut deserializer, &options)
            .map_err(|e| TranscodeError::InvalidJson(e.to_string()))?;
    deserializer
        .end()
        .map_err(|e| TranscodeError::InvalidJson(e.to_string()))?;
    Ok(message)
}

/// Query parameters may set any field the body does not own and the path does not bind.
fn query_may_set(route: &Route, path: &[String], field: &FieldDescriptor) -> bool {
    let bound_by_path = route.template.variable_paths().any(|bound| bound == path);
    let owned_by_body = match &route.body {
        BodyMapping::Whole => true,
        BodyMapping::Field(body_field) => {
            path.first().map(String::as_str) == Some(body_field.name())
                || path.first().map(String::as_str) == Some(body_field.json_name())
        }
        BodyMapping::None => false,
    };
    let scalar = !field.is_map() && !matches!(field.kind(), Kind::Message(_));
    !bound_by_path && !owned_by_body && scalar
}

/// Sets a scalar (or appends to a repeated scalar) at a dotted path, creating parents.
fn set_scalar(
    message: &mut DynamicMessage,
    path: &[String],
    leaf: &FieldDescriptor,
    name: &str,
    raw: &str,
) -> Result<(), TranscodeError> {
    let value = parse_scalar(&leaf.kind(), raw).map_err(|reason| TranscodeError::InvalidValue {
        field: name.to_owned(),
        reason,
    })?;
    let mut current = message;
    for segment in &path[..path.len() - 1] {
        let descriptor = current.descriptor();
        let Some(field) = descriptor
            .get_field_by_name(segment)
            .or_else(|| descriptor.get_field_by_json_name(segment))
        else {
            return Err(TranscodeError::UnknownQueryParameter(name.to_owned()));
        };
        current = match current.get_field_mut(&field).as_message_mut() {
            Some(inner) => inner,
            None => return Err(TranscodeError::UnknownQueryParameter(name.to_owned())),
        };
    }
    if leaf.is_list() {
        if let Value::List(items) = current.get_field_mut(leaf) {
            items.push(value);
        }
    } else {
        current.set_field(leaf, value);
    }
    Ok(())
}

/// Parses one text value into the protobuf scalar `kind` holds.
fn parse_scalar(kind: &Kind, raw: &str) -> Result<Value, String> {
    fn number<T: std::str::FromStr>(raw: &str) -> Result<T, String> {
        raw.parse::<T>()
            .map_err(|_| format!("{raw:?} is not a valid number of this type"))
    }
    Ok(match kind {
        Kind::String => Value::String(raw.to_owned()),
        Kind::Bool => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("{raw:?} is not true or false")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(number(raw)?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(number(raw)?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(number(raw)?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(number(raw)?),
        Kind::Float => Value::F32(number(raw)?),
        Kind::Double => Value::F64(number(raw)?),
        Kind::Bytes => {
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::STANDARD;
            let url_engine = base64::engine::general_purpose::URL_SAFE;
            let bytes = engine
                .decode(raw)
                .or_else(|_| url_engine.decode(raw))
                .map_err(|_| format!("{raw:?} is not base64"))?;
            Value::Bytes(bytes.into())
        }
        Kind::Enum(descriptor) => {
            let number = descriptor
                .get_value_by_name(raw)
                .map(|v| v.number())
                .or_else(|| {
                    raw.parse::<i32>()
                        .ok()
                        .filter(|n| descriptor.get_value(*n).is_some())
                })
                .ok_or_else(|| format!("{raw:?} is not a value of {}", descriptor.full_name()))?;
            Value::EnumNumber(number)
        }
        Kind::Message(descriptor) => {
            return Err(format!(
                "{} cannot be set from text",
                descriptor.full_name()
            ));
        }
    })
}
