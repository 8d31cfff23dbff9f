//! Page sizes and page tokens shared by the list methods. Lists run newest first over sequence
//! numbers; a page token is the sequence number of the last item returned, wrapped so clients
//! treat it as opaque.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use tonic::Status;

/// Page size when the request asks for 0.
pub const PAGE_SIZE_DEFAULT: usize = 20;
/// Largest page; larger requests are served this many.
pub const PAGE_SIZE_MAX: usize = 100;

/// The page size to serve for a requested `page_size`; INVALID_ARGUMENT when negative.
pub fn page_size(requested: i32) -> Result<usize, Status> {
    match usize::try_from(requested) {
        Err(_) => Err(Status::invalid_argument("page_size must not be negative")),
        Ok(0) => Ok(PAGE_SIZE_DEFAULT),
        Ok(size) => Ok(size.min(PAGE_SIZE_MAX)),
    }
}

/// The token for the page after the item with sequence number `last_seq` in a list of `kind`.
pub fn encode_token(kind: &str, last_seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{last_seq}"))
}

/// The sequence number a `token` from [`encode_token`] continues after; `None` for the first
/// page (empty token); INVALID_ARGUMENT for a token that is not one of ours for `kind`.
pub fn decode_token(kind: &str, token: &str) -> Result<Option<u64>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Status::invalid_argument("invalid page_token");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let seq = text
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|seq| seq.parse().ok())
        .ok_or_else(invalid)?;
    Ok(Some(seq))
}

/// One page of `items` (sorted newest first, each with its sequence number) after `after`, and
/// the token for the next page (empty when this is the last).
pub fn page<T>(
    kind: &str,
    items: impl Iterator<Item = (u64, T)>,
    after: Option<u64>,
    size: usize,
) -> (Vec<T>, String) {
    let mut remaining = items.filter(|(seq, _)| after.is_none_or(|after| *seq < after));
    let mut page = Vec::with_capacity(size);
    let mut last_seq = None;
    for (seq, item) in remaining.by_ref().take(size) {
        last_seq = Some(seq);
        page.push(item);
    }
    let next = match (last_seq, remaining.next()) {
        (Some(last_seq), Some(_)) => encode_token(kind, last_seq),
        _ => String::new(),
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_clamp() {
        assert_eq!(page_size(0).unwrap(), 20);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(1000).unwrap(), 100);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_strangers() {
        let token = encode_token("projects", 42);
        assert_eq!(decode_token("projects", &token).unwrap(), Some(42));
        assert!(decode_token("simulations", &token).is_err());
        assert!(decode_token("projects", "!!").is_err());
        assert_eq!(decode_token("projects", "").unwrap(), None);
    }

    #[test]
    fn pages_walk_the_whole_list_once() {
        let items = || (1..=5_u64).rev().map(|seq| (seq, seq));
        let (first, token) = page("x", items(), None, 2);
        assert_eq!(first, [5, 4]);
        let after = decode_token("x", &token).unwrap();
        let (second, token) = page("x", items(), after, 2);
        assert_eq!(second, [3, 2]);
        let after = decode_token("x", &token).unwrap();
        let (third, token) = page("x", items(), after, 2);
        assert_eq!(third, [1]);
        assert!(token.is_empty());
    }
}
