//! JSON ⇄ protobuf transcoding for one route, driven by plans compiled from the descriptors at
//! start-up ([`Plans`]); no message is built in between in either direction.
//!
//! A request is encoded from three sources, in this order (later wins): the JSON body (the whole
//! message or one field of it, per the route's `body`; see `from_json`), the query string (fields
//! not bound by the body), then the path variables. Answers are written from their wire bytes as
//! canonical proto3 JSON by [`Answer`] (see `to_json`).
//!
//! Policy for fields the message does not have: rejected with 400, in the body and in the query
//! string alike, so a typo never passes silently. See `docs/errors.md`.

mod from_json;
mod plan;
mod to_json;
pub(crate) mod wire;

pub use plan::Plans;
pub use wire::WireError;

use std::sync::Arc;

use prost_reflect::{FieldDescriptor, MessageDescriptor};

use from_json::{Scalar, base64_bytes, bytes_field, delimited, number_from_text};
use plan::{Cardinality, FieldPlan, MessageId, ValueKind};

/// Where the HTTP request body goes in the gRPC request.
#[derive(Debug, Clone)]
pub enum BodyMapping {
    /// No body: every field not bound by the path comes from the query string.
    None,
    /// `body: "*"`: the body is the whole request message (path variables are set on top).
    Whole,
    /// `body: "field"`: the body is this message field; other fields come from the query string.
    Field(FieldDescriptor),
}

/// A variable captured from a request path: the request field it fills and its decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The dotted field path, one entry per level (`["project", "id"]`).
    pub field_path: Vec<String>,
    /// The percent-decoded value.
    pub value: String,
}

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

/// Builds the encoded gRPC request of a matched route from its plan (`Route::request`): the body's fields, then the query
/// string's, then the path variables', one after another on the wire, where the last value of a
/// field wins and occurrences of a message merge, which is the order of precedence wanted.
pub fn build_request(
    plan: &RequestPlan,
    captures: &[Capture],
    query: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, TranscodeError> {
    let RequestPlan { plans, message, .. } = plan;
    let (plans, message) = (&**plans, *message);
    let mut out = Vec::with_capacity(body.len() + 32);
    let invalid_json = |error: serde_json::Error| TranscodeError::InvalidJson(error.to_string());
    match &plan.body {
        // An empty body stands for `{}`: `POST /api/simulations/{id}:stop` needs no body.
        BodyMapping::Whole if !is_empty_body(body) => {
            from_json::write_message(plans, message, body, &mut out).map_err(invalid_json)?;
        }
        // An empty body leaves the field unset, so a required body (`PATCH
        // /api/projects/{id}`) is refused by validation rather than read as `{}`.
        BodyMapping::Field(field) if !is_empty_body(body) => {
            let field = plans
                .message(message)
                .field(field.number())
                .expect("the plans were compiled from the route's pool");
            from_json::write_field(plans, field, body, &mut out).map_err(invalid_json)?;
        }
        _ => {}
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let segments: Vec<&str> = name.split('.').collect();
            let path = field_path(plans, message, &segments)
                .filter(|path| query_may_set(plan, &segments, path))
                .ok_or_else(|| TranscodeError::UnknownQueryParameter(name.to_string()))?;
            write_text_at(plans, &path, &value, &mut out).map_err(|reason| {
                TranscodeError::InvalidValue {
                    field: name.to_string(),
                    reason,
                }
            })?;
        }
    }
    for capture in captures {
        let name = capture.field_path.join(".");
        let segments: Vec<&str> = capture.field_path.iter().map(String::as_str).collect();
        // The table checked every variable at start-up; a miss is still answered as a client
        // error rather than a panic.
        let path =
            field_path(plans, message, &segments).ok_or_else(|| TranscodeError::InvalidValue {
                field: name.clone(),
                reason: "no such field".to_owned(),
            })?;
        write_text_at(plans, &path, &capture.value, &mut out).map_err(|reason| {
            TranscodeError::InvalidValue {
                field: name,
                reason,
            }
        })?;
    }
    Ok(out)
}

/// How one route's request is built: the compiled plan of its gRPC input type, where its body
/// goes, and the fields its path binds.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    plans: Arc<Plans>,
    message: MessageId,
    body: BodyMapping,
    bound_by_path: Vec<Vec<String>>,
}

impl RequestPlan {
    /// The plan of a method whose input type is `input`, with its body going to `body` and its
    /// path binding the fields `bound_by_path` (each a field path).
    pub fn new(
        plans: &Arc<Plans>,
        input: &MessageDescriptor,
        body: BodyMapping,
        bound_by_path: Vec<Vec<String>>,
    ) -> Self {
        let message = plans
            .id_of(input.full_name())
            .expect("the plans were compiled from the input type's pool");
        Self {
            plans: plans.clone(),
            message,
            body,
            bound_by_path,
        }
    }

    /// Where the route's HTTP body goes.
    pub fn body(&self) -> &BodyMapping {
        &self.body
    }

    /// Encodes a JSON document as the whole request message (what a `body: "*"` route does
    /// with its body).
    pub fn from_json(&self, json: &[u8]) -> Result<Vec<u8>, TranscodeError> {
        let mut out = Vec::with_capacity(json.len());
        from_json::write_message(&self.plans, self.message, json, &mut out)
            .map_err(|error| TranscodeError::InvalidJson(error.to_string()))?;
        Ok(out)
    }
}

/// The fields a dotted path (`project.id`, by `.proto` or JSON names) walks through: every one
/// but the last a singular message field.
fn field_path<'p>(
    plans: &'p Plans,
    mut message: MessageId,
    segments: &[&str],
) -> Option<Vec<&'p FieldPlan>> {
    let mut path = Vec::with_capacity(segments.len());
    for (at, segment) in segments.iter().enumerate() {
        let field = plans.message(message).field_named(segment)?;
        if at + 1 < segments.len() {
            match (field.cardinality, field.kind) {
                (Cardinality::Single, ValueKind::Message(inner)) => message = inner,
                _ => return None,
            }
        }
        path.push(field);
    }
    (!path.is_empty()).then_some(path)
}

/// Query parameters may set any scalar field the body does not own and the path does not bind.
fn query_may_set(plan: &RequestPlan, segments: &[&str], path: &[&FieldPlan]) -> bool {
    let bound_by_path = plan.bound_by_path.iter().any(|bound| {
        bound
            .iter()
            .map(String::as_str)
            .eq(segments.iter().copied())
    });
    let owned_by_body = match &plan.body {
        BodyMapping::Whole => true,
        BodyMapping::Field(body_field) => path[0].number == body_field.number(),
        BodyMapping::None => false,
    };
    let leaf = path[path.len() - 1];
    let scalar =
        leaf.cardinality != Cardinality::Map && !matches!(leaf.kind, ValueKind::Message(_));
    !bound_by_path && !owned_by_body && scalar
}

/// Writes a text value (a query parameter, a path variable) at the end of a field path, nested
/// in its parents; on a list it is one more item.
fn write_text_at(
    plans: &Plans,
    path: &[&FieldPlan],
    raw: &str,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match path {
        [leaf] => write_text(plans, leaf, raw, out),
        [parent, rest @ ..] => delimited(out, parent.number, |out| {
            write_text_at(plans, rest, raw, out)
        }),
        [] => Err("an empty field path".to_owned()),
    }
}

/// Parses one text value as the scalar its field holds and writes it.
fn write_text(
    plans: &Plans,
    field: &FieldPlan,
    raw: &str,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let has_presence = field.has_presence || field.cardinality == Cardinality::Repeated;
    let scalar = match field.kind {
        ValueKind::String => {
            if has_presence || !raw.is_empty() {
                bytes_field(out, field.number, raw.as_bytes());
            }
            return Ok(());
        }
        ValueKind::Bytes => {
            let bytes = base64_bytes(raw).map_err(|_| format!("{raw:?} is not base64"))?;
            if has_presence || !bytes.is_empty() {
                bytes_field(out, field.number, &bytes);
            }
            return Ok(());
        }
        ValueKind::Bool => match raw {
            "true" => Scalar::Varint(1),
            "false" => Scalar::Varint(0),
            _ => return Err(format!("{raw:?} is not true or false")),
        },
        ValueKind::Enum(index) => {
            let plan = plans.enumeration(index);
            let number = plan
                .number_of(raw)
                .or_else(|| {
                    raw.parse::<i32>()
                        .ok()
                        .filter(|n| plan.json_name(*n).is_some())
                })
                .ok_or_else(|| format!("{raw:?} is not a value of this enum"))?;
            Scalar::Varint(i64::from(number) as u64)
        }
        ValueKind::Message(_) => return Err("a message cannot be set from text".to_owned()),
        kind => number_from_text(plans, kind, raw)?
            .ok_or_else(|| format!("{raw:?} is not a value of this field"))?,
    };
    scalar.write_field(out, field.number, has_presence);
    Ok(())
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
