//! A backend's answer, as protobuf wire bytes, written straight into proto3 JSON: no message is
//! built in between. The writer reads a message's fields once, orders them by field number (they
//! almost always arrive in that order already) and writes each from its bytes.
//!
//! The JSON is what `prost-reflect` writes with defaults included, which the gateway has always
//! answered: every field without presence appears (`"roles": []`, `"count": 0`), fields with
//! presence (messages, oneof members, proto3 `optional`) only when set; lowerCamelCase names;
//! 64-bit integers as strings; enums by name (the number when it has none); bytes as standard
//! base64; `"NaN"` and `"Infinity"` for non-finite floats; the well-known types in their own
//! forms. On the wire, the last value of a singular field wins, repeated occurrences of a message
//! merge, the last member of a oneof set wins, packed and unpacked lists are both read, and
//! unknown fields are skipped. The one deliberate difference from `prost-reflect`: a float
//! wrapper holding NaN or an infinity is `"NaN"`/`"Infinity"`, as the JSON mapping says, where
//! `prost-reflect` writes `null`.

use std::ops::Range;

use base64::Engine as _;

use super::{
    plan::{
        Cardinality, FieldPlan, MAX_DURATION_SECONDS, MAX_NANOS, MAX_TIMESTAMP_SECONDS,
        MIN_TIMESTAMP_SECONDS, MessageId, Plans, ValueKind, WellKnown,
    },
    wire::{Raw, Reader, WireError},
};

/// How deep messages may nest in an answer (prost's own decoding limit).
const MAX_DEPTH: u32 = 100;

/// Writes the message `id`, encoded as `wire`, as JSON at the end of `out`.
pub fn write_message(
    plans: &Plans,
    id: MessageId,
    wire: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    Writer::new(plans, out).message(id, &[wire])
}

/// Writes only the value of field `number` of the message `id` encoded as `wire` (the default
/// value when it is not set), for a route whose `response_body` names a field.
pub fn write_field(
    plans: &Plans,
    id: MessageId,
    number: u32,
    wire: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let mut writer = Writer::new(plans, out);
    let plan = plans.message(id);
    let at = plan
        .position(number)
        .ok_or(WireError("the response field is not in the message"))?;
    let start = writer.collect(id, &[wire])?;
    let end = writer.scratch.len();
    let run = writer.run_of(start..end, at);
    let run = writer.oneof_narrowed(id, start..end, at, run);
    writer.field_value(&plan.fields[at], run)
}

/// One known field's value as it lay on the wire, in the order read.
#[derive(Debug, Clone, Copy)]
struct Occurrence<'a> {
    /// The field's position in its message plan.
    at: u16,
    /// The order on the wire, across the message's occurrences.
    seq: u32,
    raw: Raw<'a>,
}

struct Writer<'p, 'a, 'o> {
    plans: &'p Plans,
    out: &'o mut Vec<u8>,
    /// The fields read of every message being written, innermost last: a message's occurrences
    /// are a range of it, truncated when the message is done.
    scratch: Vec<Occurrence<'a>>,
    depth: u32,
}

impl<'p, 'a, 'o> Writer<'p, 'a, 'o> {
    fn new(plans: &'p Plans, out: &'o mut Vec<u8>) -> Self {
        Self {
            plans,
            out,
            scratch: Vec::new(),
            depth: 0,
        }
    }

    /// Writes a message given as one or more encodings, merged in order.
    fn message(&mut self, id: MessageId, segments: &[&'a [u8]]) -> Result<(), WireError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(WireError("messages nested too deep"));
        }
        let plans = self.plans;
        let result = match plans.message(id).well_known {
            Some(well_known) => self.well_known(well_known, id, segments),
            None => {
                self.out.push(b'{');
                let result = self.fields(id, segments, true);
                self.out.push(b'}');
                result
            }
        };
        self.depth -= 1;
        result
    }

    /// Writes a message's fields as object members (after a comma unless `first`).
    fn fields(
        &mut self,
        id: MessageId,
        segments: &[&'a [u8]],
        mut first: bool,
    ) -> Result<(), WireError> {
        let plans = self.plans;
        let plan = plans.message(id);
        let start = self.collect(id, segments)?;
        let end = self.scratch.len();
        let mut cursor = start;
        for (at, field) in plan.fields.iter().enumerate() {
            let run = self.run_of(cursor..end, at);
            cursor = run.end.max(cursor);
            let run = self.oneof_narrowed(id, start..end, at, run);
            if run.is_empty() && field.has_presence {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            self.out.extend_from_slice(field.json_key.as_bytes());
            self.field_value(field, run)?;
        }
        self.scratch.truncate(start);
        Ok(())
    }

    /// Reads every known field of a message into `scratch`, sorted by field position (stable, so
    /// wire order within a field), and returns where they start.
    fn collect(&mut self, id: MessageId, segments: &[&'a [u8]]) -> Result<usize, WireError> {
        let plan = self.plans.message(id);
        let start = self.scratch.len();
        let mut seq = 0u32;
        for segment in segments {
            let mut reader = Reader::new(segment);
            while let Some((number, raw)) = reader.field()? {
                if let Some(at) = plan.position(number) {
                    self.scratch.push(Occurrence {
                        at: at as u16,
                        seq,
                        raw,
                    });
                }
                seq = seq.wrapping_add(1);
            }
        }
        let read = &mut self.scratch[start..];
        if !read.is_sorted_by_key(|occurrence| occurrence.at) {
            read.sort_by_key(|occurrence| occurrence.at);
        }
        Ok(start)
    }

    /// The occurrences of field `at` within `range` (sorted by position), as a range.
    fn run_of(&self, range: Range<usize>, at: usize) -> Range<usize> {
        let slice = &self.scratch[range.clone()];
        let first = slice.partition_point(|occurrence| usize::from(occurrence.at) < at);
        let last = slice.partition_point(|occurrence| usize::from(occurrence.at) <= at);
        range.start + first..range.start + last
    }

    /// For a oneof member, only what the wire left set: nothing unless it is the member set last,
    /// and then only its occurrences after any other member's (setting another member clears it).
    fn oneof_narrowed(
        &self,
        id: MessageId,
        all: Range<usize>,
        at: usize,
        run: Range<usize>,
    ) -> Range<usize> {
        let plan = self.plans.message(id);
        let Some(oneof) = plan.fields[at].oneof else {
            return run;
        };
        if run.is_empty() {
            return run;
        }
        let mut last_member: Option<(u32, usize)> = None;
        let mut last_other: Option<u32> = None;
        for occurrence in &self.scratch[all] {
            let member = usize::from(occurrence.at);
            if plan.fields[member].oneof != Some(oneof) {
                continue;
            }
            if last_member.is_none_or(|(seq, _)| occurrence.seq > seq) {
                last_member = Some((occurrence.seq, member));
            }
            if member != at && last_other.is_none_or(|seq| occurrence.seq > seq) {
                last_other = Some(occurrence.seq);
            }
        }
        if last_member.map(|(_, member)| member) != Some(at) {
            return run.start..run.start;
        }
        let Some(other) = last_other else {
            return run;
        };
        let kept = self.scratch[run.clone()]
            .iter()
            .position(|occurrence| occurrence.seq > other)
            .unwrap_or(run.len());
        run.start + kept..run.end
    }

    /// Writes a field's value from its occurrences (its default when there are none).
    fn field_value(&mut self, field: &FieldPlan, run: Range<usize>) -> Result<(), WireError> {
        match field.cardinality {
            Cardinality::Single => match field.kind {
                ValueKind::Message(id) => match run.len() {
                    // Almost always: one occurrence, nothing to merge.
                    1 => match self.scratch[run.start].raw {
                        Raw::Delimited(bytes) | Raw::Group(bytes) => self.message(id, &[bytes]),
                        _ => Err(WireError("a message field with the wrong wire type")),
                    },
                    _ => {
                        let segments = self.message_segments(run)?;
                        self.message(id, &segments)
                    }
                },
                kind => match run.end.checked_sub(1).filter(|last| *last >= run.start) {
                    Some(last) => {
                        let raw = self.scratch[last].raw;
                        self.single(kind, raw)
                    }
                    None => self.default(kind),
                },
            },
            Cardinality::Repeated => {
                self.out.push(b'[');
                let mut first = true;
                for index in run {
                    let raw = self.scratch[index].raw;
                    self.element(field.kind, raw, &mut first)?;
                }
                self.out.push(b']');
                Ok(())
            }
            Cardinality::Map => {
                let ValueKind::Message(entry) = field.kind else {
                    return Err(WireError("a map without an entry message"));
                };
                let mut entries: Vec<&'a [u8]> = Vec::with_capacity(run.len());
                for index in run {
                    match self.scratch[index].raw {
                        Raw::Delimited(bytes) => entries.push(bytes),
                        _ => return Err(WireError("a map entry with the wrong wire type")),
                    }
                }
                self.map(entry, &entries)
            }
        }
    }

    /// The encodings of a singular message field, in wire order, to merge.
    fn message_segments(&self, run: Range<usize>) -> Result<Vec<&'a [u8]>, WireError> {
        self.scratch[run]
            .iter()
            .map(|occurrence| match occurrence.raw {
                Raw::Delimited(bytes) | Raw::Group(bytes) => Ok(bytes),
                _ => Err(WireError("a message field with the wrong wire type")),
            })
            .collect()
    }

    /// Writes one occurrence of a repeated field: one element, or several when packed.
    fn element(
        &mut self,
        kind: ValueKind,
        raw: Raw<'a>,
        first: &mut bool,
    ) -> Result<(), WireError> {
        let packed = match (kind, raw) {
            (ValueKind::String | ValueKind::Bytes | ValueKind::Message(_), _) => None,
            (_, Raw::Delimited(bytes)) => Some(bytes),
            _ => None,
        };
        let Some(bytes) = packed else {
            if !std::mem::take(first) {
                self.out.push(b',');
            }
            return match kind {
                ValueKind::Message(id) => match raw {
                    Raw::Delimited(bytes) | Raw::Group(bytes) => self.message(id, &[bytes]),
                    _ => Err(WireError("a message field with the wrong wire type")),
                },
                kind => self.single(kind, raw),
            };
        };
        let mut reader = Reader::new(bytes);
        while !reader.is_empty() {
            let raw = match kind {
                ValueKind::Double | ValueKind::Fixed64 | ValueKind::Sfixed64 => {
                    Raw::Fixed64(reader.fixed64()?)
                }
                ValueKind::Float | ValueKind::Fixed32 | ValueKind::Sfixed32 => {
                    Raw::Fixed32(reader.fixed32()?)
                }
                _ => Raw::Varint(reader.varint()?),
            };
            if !std::mem::take(first) {
                self.out.push(b',');
            }
            self.single(kind, raw)?;
        }
        Ok(())
    }

    /// Writes one value of a field that is not a message.
    fn single(&mut self, kind: ValueKind, raw: Raw<'a>) -> Result<(), WireError> {
        let out = &mut *self.out;
        match (kind, raw) {
            (ValueKind::Int32, Raw::Varint(v)) => integer(out, v as i32),
            (ValueKind::Int64, Raw::Varint(v)) => quoted_integer(out, v as i64),
            (ValueKind::Uint32, Raw::Varint(v)) => integer(out, v as u32),
            (ValueKind::Uint64, Raw::Varint(v)) => quoted_integer(out, v),
            (ValueKind::Sint32, Raw::Varint(v)) => {
                let v = v as u32;
                integer(out, (v >> 1) as i32 ^ -((v & 1) as i32));
            }
            (ValueKind::Sint64, Raw::Varint(v)) => {
                quoted_integer(out, (v >> 1) as i64 ^ -((v & 1) as i64));
            }
            (ValueKind::Bool, Raw::Varint(v)) => {
                out.extend_from_slice(if v != 0 { b"true" } else { b"false" });
            }
            (ValueKind::Enum(index), Raw::Varint(v)) => {
                let number = v as i32;
                let plan = self.plans.enumeration(index);
                if plan.is_null_value {
                    out.extend_from_slice(b"null");
                } else if let Some(name) = plan.json_name(number) {
                    out.extend_from_slice(name.as_bytes());
                } else {
                    integer(out, number);
                }
            }
            (ValueKind::Fixed32, Raw::Fixed32(v)) => integer(out, v),
            (ValueKind::Sfixed32, Raw::Fixed32(v)) => integer(out, v as i32),
            (ValueKind::Float, Raw::Fixed32(v)) => float(out, f32::from_bits(v)),
            (ValueKind::Fixed64, Raw::Fixed64(v)) => quoted_integer(out, v),
            (ValueKind::Sfixed64, Raw::Fixed64(v)) => quoted_integer(out, v as i64),
            (ValueKind::Double, Raw::Fixed64(v)) => float(out, f64::from_bits(v)),
            (ValueKind::String, Raw::Delimited(bytes)) => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| WireError("a string not in UTF-8"))?;
                string(out, text);
            }
            (ValueKind::Bytes, Raw::Delimited(bytes)) => base64(out, bytes),
            _ => return Err(WireError("a field with the wrong wire type")),
        }
        Ok(())
    }

    /// Writes the default value of a field that is not a message.
    fn default(&mut self, kind: ValueKind) -> Result<(), WireError> {
        let raw = match kind {
            ValueKind::Float | ValueKind::Fixed32 | ValueKind::Sfixed32 => Raw::Fixed32(0),
            ValueKind::Double | ValueKind::Fixed64 | ValueKind::Sfixed64 => Raw::Fixed64(0),
            ValueKind::String | ValueKind::Bytes => Raw::Delimited(&[]),
            ValueKind::Message(id) => return self.message(id, &[]),
            _ => Raw::Varint(0),
        };
        self.single(kind, raw)
    }

    /// Writes a map field's entries as an object; a key written twice keeps its last entry.
    fn map(&mut self, entry: MessageId, entries: &[&'a [u8]]) -> Result<(), WireError> {
        let plans = self.plans;
        let plan = plans.message(entry);
        let (Some(key_at), Some(value_at)) = (plan.position(1), plan.position(2)) else {
            return Err(WireError("a map entry without its key or value"));
        };
        // Each entry's key as JSON text, all in one buffer.
        let mut keys = Vec::new();
        let mut spans: Vec<Range<usize>> = Vec::with_capacity(entries.len());
        for bytes in entries {
            let start = self.collect(entry, &[bytes])?;
            let end = self.scratch.len();
            let run = self.run_of(start..end, key_at);
            let key_start = keys.len();
            let raw = run.end.checked_sub(1).filter(|last| *last >= run.start);
            let raw = raw.map(|last| self.scratch[last].raw);
            self.scratch.truncate(start);
            map_key(self.plans, plan.fields[key_at].kind, raw, &mut keys)?;
            spans.push(key_start..keys.len());
        }
        self.out.push(b'{');
        let mut first = true;
        for (index, bytes) in entries.iter().enumerate() {
            let key = &keys[spans[index].clone()];
            let later = spans[index + 1..]
                .iter()
                .any(|span| keys[span.clone()] == *key);
            if later {
                continue;
            }
            if !std::mem::take(&mut first) {
                self.out.push(b',');
            }
            self.out.extend_from_slice(key);
            self.out.push(b':');
            let start = self.collect(entry, &[bytes])?;
            let end = self.scratch.len();
            let run = self.run_of(start..end, value_at);
            self.field_value(&plan.fields[value_at], run)?;
            self.scratch.truncate(start);
        }
        self.out.push(b'}');
        Ok(())
    }

    fn well_known(
        &mut self,
        well_known: WellKnown,
        id: MessageId,
        segments: &[&'a [u8]],
    ) -> Result<(), WireError> {
        let plans = self.plans;
        let plan = plans.message(id);
        let start = self.collect(id, segments)?;
        let end = self.scratch.len();
        let last_of = |writer: &Self, number: u32| {
            let at = plan.position(number)?;
            let run = writer.run_of(start..end, at);
            run.end
                .checked_sub(1)
                .filter(|last| *last >= run.start)
                .map(|last| writer.scratch[last].raw)
        };
        let result = match well_known {
            // Fields a backend sent anyway are read (malformed bytes are refused), not written.
            WellKnown::Empty => {
                self.out.extend_from_slice(b"{}");
                Ok(())
            }
            WellKnown::Timestamp | WellKnown::Duration => {
                let seconds = match last_of(self, 1) {
                    Some(Raw::Varint(v)) => v as i64,
                    None => 0,
                    Some(_) => return Err(WireError("a field with the wrong wire type")),
                };
                let nanos = match last_of(self, 2) {
                    Some(Raw::Varint(v)) => v as i32,
                    None => 0,
                    Some(_) => return Err(WireError("a field with the wrong wire type")),
                };
                time(self.out, well_known, seconds, nanos)
            }
            WellKnown::FieldMask => {
                let run = self.run_of(start..end, plan.position(1).unwrap_or(0));
                let mut joined = String::new();
                for index in run {
                    let Raw::Delimited(bytes) = self.scratch[index].raw else {
                        return Err(WireError("a field with the wrong wire type"));
                    };
                    let path = std::str::from_utf8(bytes)
                        .map_err(|_| WireError("a string not in UTF-8"))?;
                    if !joined.is_empty() {
                        joined.push(',');
                    }
                    field_mask_path(&mut joined, path)?;
                }
                string(self.out, &joined);
                Ok(())
            }
            WellKnown::Struct | WellKnown::ListValue | WellKnown::Wrapper => {
                match plan.position(1) {
                    Some(at) => {
                        let run = self.run_of(start..end, at);
                        self.field_value(&plan.fields[at], run)
                    }
                    None => Err(WireError("a well-known type without its field")),
                }
            }
            WellKnown::Value => {
                let set = plan.fields.iter().enumerate().find_map(|(at, _)| {
                    let run = self.run_of(start..end, at);
                    let run = self.oneof_narrowed(id, start..end, at, run);
                    (!run.is_empty()).then_some((at, run))
                });
                match set {
                    None => {
                        self.out.extend_from_slice(b"null");
                        Ok(())
                    }
                    Some((at, run)) => {
                        let field = &plan.fields[at];
                        let last = self.scratch[run.end - 1].raw;
                        if field.kind == ValueKind::Double
                            && matches!(last, Raw::Fixed64(v) if !f64::from_bits(v).is_finite())
                        {
                            Err(WireError(
                                "a google.protobuf.Value number that is not finite",
                            ))
                        } else {
                            self.field_value(field, run)
                        }
                    }
                }
            }
            WellKnown::Any => self.any(id, start..end),
        };
        self.scratch.truncate(start);
        result
    }

    /// `google.protobuf.Any`: `{"@type": url, ...the payload's fields}`, or `{"@type": url,
    /// "value": ...}` when the payload is itself a well-known type.
    fn any(&mut self, id: MessageId, all: Range<usize>) -> Result<(), WireError> {
        let plans = self.plans;
        let plan = plans.message(id);
        let last = |at: Option<usize>| {
            let run = self.run_of(all.clone(), at?);
            run.end
                .checked_sub(1)
                .filter(|last| *last >= run.start)
                .map(|last| self.scratch[last].raw)
        };
        let type_url = match last(plan.position(1)) {
            Some(Raw::Delimited(bytes)) => {
                std::str::from_utf8(bytes).map_err(|_| WireError("a string not in UTF-8"))?
            }
            None => "",
            Some(_) => return Err(WireError("a field with the wrong wire type")),
        };
        let payload: &'a [u8] = match last(plan.position(2)) {
            Some(Raw::Delimited(bytes)) => bytes,
            None => &[],
            Some(_) => return Err(WireError("a field with the wrong wire type")),
        };
        let name = type_url
            .rsplit_once('/')
            .map(|(_, name)| name)
            .ok_or(WireError("an Any whose type URL has no '/'"))?;
        let inner = plans
            .id_of(name)
            .ok_or(WireError("an Any of a type the gateway does not know"))?;
        self.out.extend_from_slice(b"{\"@type\":");
        string(self.out, type_url);
        if plans.message(inner).well_known.is_some() {
            self.out.extend_from_slice(b",\"value\":");
            self.message(inner, &[payload])?;
        } else {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(WireError("messages nested too deep"));
            }
            self.fields(inner, &[payload], false)?;
            self.depth -= 1;
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Writes a map key (JSON object keys are strings: numbers and booleans are quoted).
fn map_key(
    plans: &Plans,
    kind: ValueKind,
    raw: Option<Raw<'_>>,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    match kind {
        ValueKind::String => {
            let bytes = match raw {
                Some(Raw::Delimited(bytes)) => bytes,
                None => &[],
                Some(_) => return Err(WireError("a map key with the wrong wire type")),
            };
            let text =
                std::str::from_utf8(bytes).map_err(|_| WireError("a string not in UTF-8"))?;
            string(out, text);
            Ok(())
        }
        ValueKind::Bool => {
            let value = match raw {
                Some(Raw::Varint(v)) => v != 0,
                None => false,
                Some(_) => return Err(WireError("a map key with the wrong wire type")),
            };
            out.extend_from_slice(if value { b"\"true\"" } else { b"\"false\"" });
            Ok(())
        }
        _ => {
            // Integers: write the number, then quote it unless it already is (64-bit ones are).
            let raw = raw.unwrap_or(match kind {
                ValueKind::Fixed32 | ValueKind::Sfixed32 => Raw::Fixed32(0),
                ValueKind::Fixed64 | ValueKind::Sfixed64 => Raw::Fixed64(0),
                _ => Raw::Varint(0),
            });
            let mut text = Vec::with_capacity(24);
            let mut writer = Writer::new(plans, &mut text);
            writer.single(kind, raw)?;
            if text.first() == Some(&b'"') {
                out.extend_from_slice(&text);
            } else {
                out.push(b'"');
                out.extend_from_slice(&text);
                out.push(b'"');
            }
            Ok(())
        }
    }
}

/// A Timestamp as RFC 3339 (`"2024-05-01T12:00:00.250Z"`) or a Duration as `"1.250s"`, with 0,
/// 3, 6 or 9 fractional digits, within the ranges the JSON mapping allows.
fn time(out: &mut Vec<u8>, kind: WellKnown, seconds: i64, nanos: i32) -> Result<(), WireError> {
    use std::io::Write as _;
    let written = if kind == WellKnown::Timestamp {
        if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
            return Err(WireError("a timestamp out of range"));
        }
        if (0..1_000_000_000).contains(&nanos) {
            rfc3339(out, seconds, nanos.unsigned_abs());
            return Ok(());
        }
        // Nanos out of their range: prost's own normalisation, as prost-reflect writes them.
        write!(out, "\"{}\"", prost_types::Timestamp { seconds, nanos })
    } else {
        if seconds.unsigned_abs() > MAX_DURATION_SECONDS || nanos.unsigned_abs() > MAX_NANOS {
            return Err(WireError("a duration out of range"));
        }
        write!(out, "\"{}\"", prost_types::Duration { seconds, nanos })
    };
    written.map_err(|_| WireError("a time that cannot be written"))
}

/// Writes a timestamp in range with canonical nanos as `"YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|
/// .fffffffff]Z"`, the form prost's `Display` gives, without the formatting machinery.
fn rfc3339(out: &mut Vec<u8>, seconds: i64, nanos: u32) {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    out.push(b'"');
    digits(out, year.unsigned_abs(), 4);
    out.push(b'-');
    digits(out, month.unsigned_abs(), 2);
    out.push(b'-');
    digits(out, day.unsigned_abs(), 2);
    out.push(b'T');
    digits(out, (of_day / 3_600).unsigned_abs(), 2);
    out.push(b':');
    digits(out, (of_day / 60 % 60).unsigned_abs(), 2);
    out.push(b':');
    digits(out, (of_day % 60).unsigned_abs(), 2);
    if nanos != 0 {
        out.push(b'.');
        if nanos.is_multiple_of(1_000_000) {
            digits(out, u64::from(nanos / 1_000_000), 3);
        } else if nanos.is_multiple_of(1_000) {
            digits(out, u64::from(nanos / 1_000), 6);
        } else {
            digits(out, u64::from(nanos), 9);
        }
    }
    out.extend_from_slice(b"Z\"");
}

/// `value` in decimal, zero-padded to `width` digits.
fn digits(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut buffer = [b'0'; 20];
    let mut at = buffer.len();
    let mut rest = value;
    while rest > 0 || at == buffer.len() {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let start = at.min(buffer.len() - width);
    out.extend_from_slice(&buffer[start..]);
}

/// A FieldMask path (`user.display_name`) in lowerCamelCase (`user.displayName`); a path that
/// would not come back the same (`fooBar`, `foo__bar`) cannot be written.
fn field_mask_path(joined: &mut String, path: &str) -> Result<(), WireError> {
    let refused = WireError("a FieldMask path that has no lowerCamelCase form");
    let mut upper_next = false;
    for ch in path.chars() {
        if ch.is_ascii_uppercase() {
            return Err(refused);
        }
        if upper_next {
            let upper = ch.to_ascii_uppercase();
            if upper == ch {
                return Err(refused);
            }
            joined.push(upper);
            upper_next = false;
        } else if ch == '_' {
            upper_next = true;
        } else {
            joined.push(ch);
        }
    }
    Ok(())
}

fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn quoted_integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.push(b'"');
    integer(out, value);
    out.push(b'"');
}

/// A finite float as `serde_json` writes it (shortest round-trip form), others as strings.
fn float<F: ryu::Float + Into<f64>>(out: &mut Vec<u8>, value: F) {
    let wide: f64 = value.into();
    if wide.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else if wide.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if wide > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let engine = base64::engine::general_purpose::STANDARD;
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = engine.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

/// A JSON string, escaped as `serde_json` escapes: quotes, backslashes and control characters.
pub fn string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[plain..at]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
                plain = at + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..at]);
        out.extend_from_slice(escape);
        plain = at + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_prost_writes_them_at_the_edges() {
        let edges = [
            MIN_TIMESTAMP_SECONDS,
            MIN_TIMESTAMP_SECONDS + 86_399,
            -62_135_596_800 + 365 * 86_400,
            -1,
            0,
            951_782_400,     // 2000-02-29
            4_107_542_400,   // 2100-03-01 (2100 is no leap year)
            253_402_214_400, // 9999-12-31
            MAX_TIMESTAMP_SECONDS,
        ];
        for seconds in edges {
            for nanos in [0, 1, 500_000_000, 123_456_000, 999_999_999] {
                let mut ours = Vec::new();
                rfc3339(&mut ours, seconds, nanos);
                let prost = format!(
                    "\"{}\"",
                    prost_types::Timestamp {
                        seconds,
                        nanos: nanos as i32
                    }
                );
                assert_eq!(String::from_utf8(ours).unwrap(), prost, "{seconds} {nanos}");
            }
        }
    }
}
