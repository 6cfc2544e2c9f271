//! Reading the response headers modelctl acts on: `Link: rel="next"` (the Hub's tree
//! pagination) and `Content-Range` (the size and span of a ranged answer).
//!
//! `Content-Range` goes through `http-content-range`, which checks the whole grammar
//! (`bytes first-last/complete`, first ≤ last < complete; `*` totals and `bytes */n`); the
//! `Link` reader is our own (see docs/design-decisions.md): it reads each `<target>` whole, so
//! a comma inside a URL does not split it.

pub use http_content_range::ContentRange;

/// A `206`'s span and total: `Some((first, last, total))` for `bytes first-last/total`.
pub fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    match ContentRange::parse(value.trim())? {
        ContentRange::Bytes(r) => Some((r.first_byte, r.last_byte, r.complete_length)),
        ContentRange::UnboundBytes(_) | ContentRange::Unsatisfied(_) => None,
    }
}

/// The complete length a `Content-Range` states (`bytes 0-0/1234` and `bytes */1234` alike).
pub fn content_range_total(value: &str) -> Option<u64> {
    match ContentRange::parse(value.trim())? {
        ContentRange::Bytes(r) => Some(r.complete_length),
        ContentRange::Unsatisfied(r) => Some(r.complete_length),
        ContentRange::UnboundBytes(_) => None,
    }
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        let is_next = after[..params_end].split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            let Some((key, value)) = p.split_once('=') else {
                return false;
            };
            key.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let h = r#"<https://hub/api/models/a/b/tree/x?cursor=2>; rel="next", <https://hub/first>; rel="first""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://hub/api/models/a/b/tree/x?cursor=2")
        );
        assert_eq!(next_link(r#"<https://hub/first>; rel="first""#), None);
        assert_eq!(
            next_link("<https://hub/n>; rel=next").as_deref(),
            Some("https://hub/n")
        );
    }

    #[test]
    fn a_comma_inside_a_link_target_does_not_split_it() {
        let h =
            r#"<https://hub/first?a=1,2>; rel="first", <https://hub/tree?cursor=a,b>; rel="next""#;
        assert_eq!(next_link(h).as_deref(), Some("https://hub/tree?cursor=a,b"));
    }

    #[test]
    fn content_ranges_are_read_and_bad_ones_refused() {
        assert_eq!(content_range("bytes 0-0/1234"), Some((0, 0, 1234)));
        assert_eq!(content_range_total("bytes 0-0/1234"), Some(1234));
        assert_eq!(content_range_total("bytes */99"), Some(99));
        assert_eq!(content_range("bytes 0-0/*"), None);
        assert_eq!(content_range("bytes 5-2/10"), None, "last before first");
        assert_eq!(content_range("bytes 0-10/10"), None, "last past the end");
        assert_eq!(content_range("items 0-1/2"), None);
    }
}
