//! `google.api.http` path templates: parsing, matching and variable extraction.
//!
//! Grammar (from the public `HttpRule` specification):
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! Matching works on the raw (still percent-encoded) request path, so an encoded `/` (`%2F`) never
//! splits a segment. Captured values are percent-decoded afterwards and must be UTF-8.

use std::{cmp::Ordering, fmt};

use percent_encoding::percent_decode_str;

use crate::transcode::Capture;

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
    verb: Option<String>,
    variables: Vec<Variable>,
    source: String,
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `*`: any one non-empty segment.
    Single,
    /// `**`: one or more remaining segments (must be last).
    Rest,
}

/// A `{field.path=...}` variable and the segments it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field_path: Vec<String>,
    /// Index of the first segment the variable covers.
    start: usize,
    /// One past the last segment it covers.
    end: usize,
}

/// Why a template string is not a valid template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

/// Why a request path that matched a template still cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A captured value is not valid UTF-8 once percent-decoded.
    #[error("path segment is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    /// A segment is `.` or `..` (also percent-encoded). Never resolved and never passed on: a
    /// proxy in front that resolves them would see another path than the gateway does.
    #[error("path segments '.' and '..' are not accepted")]
    DotSegment,
}

/// Whether `path` has a `.` or `..` segment, also percent-encoded (`%2e`, `%2E%2e`).
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

impl PathTemplate {
    /// Parses a template such as `/api/simulations/{id}:stop`.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        Parser {
            input: template,
            position: 0,
            segments: Vec::new(),
            variables: Vec::new(),
        }
        .parse()
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the template ends in a `:verb`.
    pub fn has_verb(&self) -> bool {
        self.verb.is_some()
    }

    /// The field paths of the template's variables, in order.
    pub fn variable_paths(&self) -> impl Iterator<Item = &[String]> {
        self.variables.iter().map(|v| v.field_path.as_slice())
    }

    /// Matches a raw request path (no query string). Returns the raw segments each variable covers,
    /// or `None` when the path does not fit the template.
    pub fn matches<'p>(&'p self, path: &'p str) -> Option<RawMatch<'p>> {
        let segments: Vec<&'p str> = path.strip_prefix('/')?.split('/').collect();
        self.matches_segments(&segments)
    }

    /// [`matches`](Self::matches) on a path already split at its slashes (the leading one
    /// dropped), so that a lookup splits once for all the templates it tries.
    pub fn matches_segments<'p>(&'p self, segments: &[&'p str]) -> Option<RawMatch<'p>> {
        let (last, init) = segments.split_last()?;
        // A verb is the end of the last segment: `/api/simulations/s-1:stop`.
        let last = match &self.verb {
            Some(verb) => {
                let (head, tail) = last.rsplit_once(':')?;
                if tail != verb {
                    return None;
                }
                head
            }
            None => last,
        };
        // Empty segments (`//`, a trailing `/`) never match: see docs/request-lifecycle.md.
        if last.is_empty() || init.iter().any(|segment| segment.is_empty()) {
            return None;
        }
        let fits = match self.segments.last() {
            Some(Segment::Rest) => segments.len() >= self.segments.len(),
            _ => segments.len() == self.segments.len(),
        };
        if !fits {
            return None;
        }
        let segment_at = |index: usize| {
            if index == init.len() {
                last
            } else {
                segments[index]
            }
        };
        for (index, segment) in self.segments.iter().enumerate() {
            if let Segment::Literal(literal) = segment
                && segment_at(index) != literal
            {
                return None;
            }
        }
        let mut segments = segments.to_vec();
        segments[init.len()] = last;
        Some(RawMatch {
            template: self,
            segments,
        })
    }

    /// How specific the template is, for choosing between several that match one path: a verb
    /// beats no verb, then segment by segment a literal beats `*`, which beats `**`.
    pub fn specificity_cmp(&self, other: &Self) -> Ordering {
        let rank = |segment: &Segment| match segment {
            Segment::Literal(_) => 2,
            Segment::Single => 1,
            Segment::Rest => 0,
        };
        self.verb
            .is_some()
            .cmp(&other.verb.is_some())
            .then_with(|| {
                self.segments
                    .iter()
                    .map(rank)
                    .cmp(other.segments.iter().map(rank))
            })
            .then_with(|| self.segments.len().cmp(&other.segments.len()))
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A successful match, before the captured values are decoded.
#[derive(Debug)]
pub struct RawMatch<'p> {
    template: &'p PathTemplate,
    segments: Vec<&'p str>,
}

impl RawMatch<'_> {
    /// Decodes every captured variable.
    pub fn captures(&self) -> Result<Vec<Capture>, PathError> {
        self.template
            .variables
            .iter()
            .map(|variable| {
                let end = if variable.end == usize::MAX {
                    self.segments.len()
                } else {
                    variable.end
                };
                let mut value = String::new();
                for (index, segment) in self.segments[variable.start..end].iter().enumerate() {
                    if index > 0 {
                        value.push('/');
                    }
                    let decoded = percent_decode_str(segment)
                        .decode_utf8()
                        .map_err(|_| PathError::NotUtf8)?;
                    value.push_str(&decoded);
                }
                Ok(Capture {
                    field_path: variable.field_path.clone(),
                    value,
                })
            })
            .collect()
    }
}

/// A one-pass recursive-descent parser over the template grammar.
struct Parser<'t> {
    input: &'t str,
    position: usize,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl<'t> Parser<'t> {
    fn parse(mut self) -> Result<PathTemplate, TemplateError> {
        if !self.eat('/') {
            return Err(self.error("must start with '/'"));
        }
        self.parse_segments(false)?;
        let verb = if self.eat(':') {
            let literal = self.take_literal();
            if literal.is_empty() {
                return Err(self.error("empty verb"));
            }
            Some(literal.to_owned())
        } else {
            None
        };
        if self.position != self.input.len() {
            return Err(self.error("unexpected character"));
        }
        let rest_positions = self
            .segments
            .iter()
            .filter(|segment| **segment == Segment::Rest)
            .count();
        if rest_positions > 1
            || (rest_positions == 1 && self.segments.last() != Some(&Segment::Rest))
        {
            return Err(self.error("'**' may only be the last segment"));
        }
        let mut seen = Vec::new();
        for variable in &self.variables {
            if seen.contains(&&variable.field_path) {
                return Err(self.error("the same field is bound twice"));
            }
            seen.push(&variable.field_path);
        }
        Ok(PathTemplate {
            segments: self.segments,
            verb,
            variables: self.variables,
            source: self.input.to_owned(),
        })
    }

    fn parse_segments(&mut self, inside_variable: bool) -> Result<(), TemplateError> {
        loop {
            self.parse_segment(inside_variable)?;
            if !self.eat('/') {
                return Ok(());
            }
        }
    }

    fn parse_segment(&mut self, inside_variable: bool) -> Result<(), TemplateError> {
        if self.input[self.position..].starts_with("**") {
            self.position += 2;
            self.segments.push(Segment::Rest);
        } else if self.eat('*') {
            self.segments.push(Segment::Single);
        } else if !inside_variable && self.eat('{') {
            self.parse_variable()?;
        } else {
            let literal = self.take_literal();
            if literal.is_empty() {
                return Err(self.error("empty segment"));
            }
            self.segments.push(Segment::Literal(literal.to_owned()));
        }
        Ok(())
    }

    fn parse_variable(&mut self) -> Result<(), TemplateError> {
        let start_of_name = self.position;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                self.position += 1;
            } else {
                break;
            }
        }
        let name = &self.input[start_of_name..self.position];
        let field_path: Vec<String> = name.split('.').map(str::to_owned).collect();
        if field_path.iter().any(String::is_empty) {
            return Err(self.error("invalid variable name"));
        }
        let start = self.segments.len();
        if self.eat('=') {
            self.parse_segments(true)?;
        } else {
            self.segments.push(Segment::Single);
        }
        if !self.eat('}') {
            return Err(self.error("unclosed variable"));
        }
        let end = if self.segments.last() == Some(&Segment::Rest) {
            usize::MAX
        } else {
            self.segments.len()
        };
        self.variables.push(Variable {
            field_path,
            start,
            end,
        });
        Ok(())
    }

    /// A literal runs until a character with meaning in the grammar.
    fn take_literal(&mut self) -> &'t str {
        let start = self.position;
        while let Some(c) = self.peek() {
            if matches!(c, '/' | ':' | '{' | '}' | '*' | '=') {
                break;
            }
            self.position += c.len_utf8();
        }
        &self.input[start..self.position]
    }

    fn peek(&self) -> Option<char> {
        self.input[self.position..].chars().next()
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.position += expected.len_utf8();
            true
        } else {
            false
        }
    }

    fn error(&self, reason: &'static str) -> TemplateError {
        TemplateError {
            template: self.input.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn captures(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        let template = PathTemplate::parse(template).expect("valid template");
        let matched = template.matches(path)?;
        Some(
            matched
                .captures()
                .expect("utf-8")
                .into_iter()
                .map(|c| (c.field_path.join("."), c.value))
                .collect(),
        )
    }

    #[test]
    fn literal_templates_match_only_themselves() {
        assert_eq!(captures("/api/projects", "/api/projects"), Some(vec![]));
        assert_eq!(captures("/api/projects", "/api/project"), None);
        assert_eq!(captures("/api/projects", "/api/projects/"), None);
        assert_eq!(captures("/api/projects", "/api/projects/x"), None);
    }

    #[test]
    fn variables_capture_and_decode_one_segment() {
        assert_eq!(
            captures("/api/projects/{id}", "/api/projects/p%2D1"),
            Some(vec![("id".into(), "p-1".into())])
        );
        // An encoded slash stays inside its segment.
        assert_eq!(
            captures("/api/projects/{id}", "/api/projects/a%2Fb"),
            Some(vec![("id".into(), "a/b".into())])
        );
        assert_eq!(captures("/api/projects/{id}", "/api/projects/a/b"), None);
    }

    #[test]
    fn verbs_are_split_from_the_last_segment() {
        assert_eq!(
            captures("/api/simulations/{id}:stop", "/api/simulations/s-1:stop"),
            Some(vec![("id".into(), "s-1".into())])
        );
        assert_eq!(
            captures("/api/simulations/{id}:stop", "/api/simulations/s-1:start"),
            None
        );
        assert_eq!(
            captures("/api/simulations/{id}:stop", "/api/simulations/s-1"),
            None
        );
    }

    #[test]
    fn nested_fields_and_multi_segment_variables() {
        assert_eq!(
            captures("/v1/{name=projects/*/items/*}", "/v1/projects/a/items/b"),
            Some(vec![("name".into(), "projects/a/items/b".into())])
        );
        assert_eq!(
            captures("/v1/{project.id}/files/{path=**}", "/v1/p/files/a/b/c"),
            Some(vec![
                ("project.id".into(), "p".into()),
                ("path".into(), "a/b/c".into())
            ])
        );
    }

    #[test]
    fn non_utf8_captures_are_an_error_not_a_panic() {
        let template = PathTemplate::parse("/api/projects/{id}").unwrap();
        let matched = template.matches("/api/projects/%FF%FE").unwrap();
        assert_eq!(matched.captures(), Err(PathError::NotUtf8));
    }

    #[test]
    fn invalid_templates_are_rejected() {
        for bad in [
            "api",
            "/api//x",
            "/api/{id",
            "/api/{}",
            "/api/**/x",
            "/api/x:",
            "/{id}/{id}",
        ] {
            assert!(
                PathTemplate::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn literals_are_more_specific_than_variables() {
        let literal = PathTemplate::parse("/api/projects/templates").unwrap();
        let variable = PathTemplate::parse("/api/projects/{id}").unwrap();
        let verb = PathTemplate::parse("/api/projects/{id}:stop").unwrap();
        assert_eq!(literal.specificity_cmp(&variable), Ordering::Greater);
        assert_eq!(verb.specificity_cmp(&literal), Ordering::Greater);
    }

    /// A template made of literals and single-segment variables, with the values to fill it.
    fn template_and_values() -> impl Strategy<Value = (Vec<Option<String>>, Option<String>)> {
        let segment = prop_oneof![
            "[a-z][a-z0-9_-]{0,8}".prop_map(Some),
            Just(None), // a variable
        ];
        (
            proptest::collection::vec(segment, 1..6),
            proptest::option::of("[a-z]{1,6}"),
        )
    }

    fn build(parts: &[Option<String>], verb: &Option<String>) -> (String, Vec<String>) {
        let mut template = String::new();
        let mut names = Vec::new();
        for (index, part) in parts.iter().enumerate() {
            template.push('/');
            match part {
                Some(literal) => template.push_str(literal),
                None => {
                    let name = format!("field_{index}");
                    template.push_str(&format!("{{{name}}}"));
                    names.push(name);
                }
            }
        }
        if let Some(verb) = verb {
            template.push(':');
            template.push_str(verb);
        }
        (template, names)
    }

    proptest! {
        /// Any path a template generates matches it and yields back exactly the values put in,
        /// whatever characters those values hold (they are percent-encoded into the path).
        #[test]
        fn generated_paths_match_and_round_trip(
            (parts, verb) in template_and_values(),
            values in proptest::collection::vec("\\PC{1,12}", 6),
        ) {
            let (template_text, names) = build(&parts, &verb);
            let template = PathTemplate::parse(&template_text).unwrap();
            let mut path = String::new();
            let mut expected = Vec::new();
            let mut next_value = values.iter();
            for part in &parts {
                path.push('/');
                match part {
                    Some(literal) => path.push_str(literal),
                    None => {
                        let value = next_value.next().unwrap();
                        path.push_str(
                            &percent_encoding::utf8_percent_encode(
                                value,
                                percent_encoding::NON_ALPHANUMERIC,
                            )
                            .to_string(),
                        );
                        expected.push(value.clone());
                    }
                }
            }
            if let Some(verb) = &verb {
                path.push(':');
                path.push_str(verb);
            }
            let matched = template.matches(&path);
            prop_assert!(matched.is_some(), "{path} should match {template_text}");
            let captures = matched.unwrap().captures().unwrap();
            let got_names: Vec<String> = captures.iter().map(|c| c.field_path.join(".")).collect();
            let got_values: Vec<String> = captures.into_iter().map(|c| c.value).collect();
            prop_assert_eq!(got_names, names);
            prop_assert_eq!(got_values, expected);
        }

        /// Near-misses do not match: a changed literal, an extra or a missing segment, a wrong verb.
        #[test]
        fn near_misses_do_not_match(
            (parts, verb) in template_and_values(),
            mutation in 0usize..4,
        ) {
            let (template_text, _) = build(&parts, &verb);
            let template = PathTemplate::parse(&template_text).unwrap();
            let mut segments: Vec<String> = parts
                .iter()
                .map(|part| part.clone().unwrap_or_else(|| "value".to_owned()))
                .collect();
            let mut verb = verb.clone();
            match mutation {
                0 => {
                    // Change the first literal, if any; otherwise add a segment.
                    match parts.iter().position(Option::is_some) {
                        Some(index) => segments[index].push('x'),
                        None => segments.push("extra".to_owned()),
                    }
                }
                1 => segments.push("extra".to_owned()),
                2 => {
                    segments.pop();
                    if segments.is_empty() {
                        segments.push(String::new());
                    }
                }
                _ => {
                    verb = match verb {
                        Some(verb) => Some(format!("{verb}x")),
                        None => Some("verb".to_owned()),
                    };
                    // A trailing ":verb" on a variable segment is part of its value, so only a
                    // template ending in a literal proves a near-miss here.
                    if parts.last().is_some_and(Option::is_none) && template_text.ends_with('}') {
                        segments.push("extra".to_owned());
                    }
                }
            }
            let mut path = String::new();
            for segment in &segments {
                path.push('/');
                path.push_str(segment);
            }
            if let Some(verb) = &verb {
                path.push(':');
                path.push_str(verb);
            }
            prop_assert!(template.matches(&path).is_none(), "{path} must not match {template_text}");
        }
    }
}
