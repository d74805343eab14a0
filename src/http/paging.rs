//! Keyset paging shared by every list endpoint: `?limit=` (1–200, default
//! 50) and an opaque `?cursor=` from the previous page's `X-Next-Cursor`.
//! The cursor is the last row's time and id, so pages never skip or repeat
//! rows while new ones are being added.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use http::header::HeaderName;
use uuid::Uuid;

use super::request::Request;
use super::response::Reply;
use crate::error::{ApiError, FieldError};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// A parsed `?limit=&cursor=`.
pub struct Page {
    /// Rows wanted.
    pub limit: i64,
    /// Start after this (time, id), newest first.
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

impl Page {
    /// Both parameters, every bad one listed in one 422.
    pub fn parse(req: &Request) -> Result<Page, ApiError> {
        let query = req.query_params()?;
        let mut errors = Vec::new();
        let limit = match query.get("limit").map(|raw| raw.trim().parse::<i64>()) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }
        };
        let after = match query.get("cursor").map(decode_cursor) {
            None => None,
            Some(Some(after)) => Some(after),
            Some(None) => {
                errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor this service issued",
                ));
                None
            }
        };
        if errors.is_empty() {
            Ok(Page { limit, after })
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    /// Rows to fetch: one more than wanted tells whether another page exists.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts `rows` (fetched with [`Page::fetch`]) to the page and returns
    /// the next page's cursor, if there is one.
    pub fn finish<T>(
        &self,
        rows: &mut Vec<T>,
        key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Option<String> {
        if rows.len() as i64 <= self.limit {
            return None;
        }
        rows.truncate(self.limit as usize);
        rows.last().map(|last| {
            let (at, id) = key(last);
            encode_cursor(&at, id)
        })
    }
}

/// Adds `X-Next-Cursor` when there is a next page.
pub fn with_next(reply: Reply, next: Option<String>) -> Reply {
    match next {
        Some(next) => reply.with_header(HeaderName::from_static("x-next-cursor"), &next),
        None => reply,
    }
}

/// An opaque cursor: the last row's time (µs) and id.
fn encode_cursor(at: &DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", at.timestamp_micros(), id))
}

fn decode_cursor(raw: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (micros, id) = text.split_once('.')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_roundtrip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_780_000_000_123_456).expect("time");
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(&at, id)), Some((at, id)));
        for bad in [
            "",
            "abc",
            "!!!",
            &URL_SAFE_NO_PAD.encode("12.notauuid"),
            &URL_SAFE_NO_PAD.encode("x.y"),
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_page_is_cut_to_its_limit_with_a_cursor_only_when_more_exist() {
        let page = Page {
            limit: 2,
            after: None,
        };
        let at = DateTime::from_timestamp_micros(1_780_000_000_000_000).expect("time");
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut rows = ids.clone();
        let next = page.finish(&mut rows, |id| (at, *id));
        assert_eq!(rows, ids[..2]);
        assert_eq!(next.as_deref().and_then(decode_cursor), Some((at, ids[1])));
        let mut short = ids[..2].to_vec();
        assert_eq!(page.finish(&mut short, |id| (at, *id)), None);
    }
}
