//! Request-size limits checked before any work is done: request-target length (414), header count
//! and total header size (431), and a declared body larger than allowed (413). The body itself is
//! read through a size-limited reader in [`crate::proxy`], so an undeclared (chunked) body is held
//! to the same limit.

use axum::{
    extract::Request,
    http::{StatusCode, header},
};

use crate::{
    request::{error::ApiError, error_code::ErrorCode},
    serve::HttpConfig,
};

/// The request's head within `[http]`'s limits on the target and the headers, or the error
/// that says which limit it exceeds.
pub fn check_head(config: &HttpConfig, request: &Request) -> Result<(), ApiError> {
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target_len > config.uri_bytes_max {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            ErrorCode::UriTooLong,
            format!("the request target exceeds {} bytes", config.uri_bytes_max),
        ));
    }
    let headers = request.headers();
    if headers.len() > config.header_count_max {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
            format!("more than {} request headers", config.header_count_max),
        ));
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > config.header_bytes_max {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
            format!("request headers exceed {} bytes", config.header_bytes_max),
        ));
    }
    let declared_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_body.is_some_and(|length| length > config.body_bytes_max as u64) {
        return Err(payload_too_large(config.body_bytes_max));
    }
    Ok(())
}

/// How deeply `body` nests arrays and objects, counting only brackets outside strings (a linear
/// scan, cheaper than the parse it protects: deep nesting costs a recursive parser stack and
/// time, so it is refused before parsing).
pub fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// 400 `json_too_deep` for a body nesting deeper than `limit`.
pub fn json_too_deep(limit: usize) -> ApiError {
    ApiError::bad_request(
        ErrorCode::JsonTooDeep,
        format!("the JSON body nests arrays and objects deeper than {limit} levels"),
    )
}

/// 413 for a body over the limit.
pub fn payload_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the request body exceeds {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_brackets_outside_strings_only() {
        assert_eq!(json_depth(b""), 0);
        assert_eq!(json_depth(br#"{"a":1}"#), 1);
        assert_eq!(json_depth(br#"{"a":[{"b":[]}],"c":{}}"#), 4);
        assert_eq!(json_depth(br#"{"a":"[[[{{{"}"#), 1, "brackets in strings");
        assert_eq!(
            json_depth(br#"{"a":"\"[[[","b":[]}"#),
            2,
            "an escaped quote"
        );
        assert_eq!(json_depth(&[b'['; 100_000]), 100_000);
    }
}
