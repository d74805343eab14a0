//! A parsed request, and the parsers of its parts: JSON bodies, forms
//! (url-encoded and multipart), query strings and the bearer token.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldError};

/// Largest body accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Query parameters that would carry a secret: refused wherever they appear,
/// since URLs end up in logs, proxies and browser history.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "new_password",
    "current_password",
    "token",
    "access_token",
    "refresh_token",
    "client_secret",
];

/// Everything a handler gets from a request.
pub struct Request {
    /// The method.
    pub method: Method,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole body (at most [`MAX_BODY`]).
    pub body: Bytes,
    /// The client address (through trusted proxies' `X-Forwarded-For`).
    pub peer: IpAddr,
}

impl Request {
    /// A header as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type` essence, lower-cased (`application/json`).
    fn media_type(&self) -> Option<String> {
        let raw = self.header("content-type")?;
        Some(
            raw.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
        )
    }

    /// The body as a JSON object. Wrong media type → 415; not JSON, or not
    /// an object → 400.
    pub fn json(&self) -> Result<JsonBody, ApiError> {
        match self.media_type().as_deref() {
            Some("application/json") => {}
            Some(t) if t.starts_with("application/") && t.ends_with("+json") => {}
            _ => return Err(ApiError::UnsupportedMediaType("application/json")),
        }
        let value: Value = serde_json::from_slice(&self.body)
            .map_err(|_| ApiError::BadRequest("Request body is not valid JSON".into()))?;
        match value {
            Value::Object(map) => Ok(JsonBody(map)),
            _ => Err(ApiError::BadRequest(
                "Request body must be a JSON object".into(),
            )),
        }
    }

    /// The body as a form: `application/x-www-form-urlencoded` or
    /// `multipart/form-data`. A field sent twice → 422.
    pub async fn form(&self) -> Result<Form, ApiError> {
        const WANTED: &str = "application/x-www-form-urlencoded or multipart/form-data";
        match self.media_type().as_deref() {
            Some("application/x-www-form-urlencoded") => {
                Form::from_pairs(parse_urlencoded(&self.body)?)
            }
            Some("multipart/form-data") => {
                let content_type = self.header("content-type").unwrap_or_default();
                let boundary = multer::parse_boundary(content_type)
                    .map_err(|_| ApiError::BadRequest("Multipart body has no boundary".into()))?;
                let body = self.body.clone();
                let stream =
                    futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
                let mut multipart = multer::Multipart::new(stream, boundary);
                let mut pairs = Vec::new();
                loop {
                    match multipart.next_field().await {
                        Ok(Some(field)) => {
                            let name = field.name().unwrap_or_default().to_owned();
                            let bytes = field.bytes().await.map_err(|_| {
                                ApiError::BadRequest("Multipart body is malformed".into())
                            })?;
                            // Refused, never "repaired": a password is taken exactly as sent.
                            let value = String::from_utf8(bytes.to_vec()).map_err(|_| {
                                ApiError::BadRequest("Form values must be UTF-8".into())
                            })?;
                            pairs.push((name, value));
                        }
                        Ok(None) => break,
                        Err(_) => {
                            return Err(ApiError::BadRequest("Multipart body is malformed".into()))
                        }
                    }
                }
                Form::from_pairs(pairs)
            }
            _ => Err(ApiError::UnsupportedMediaType(WANTED)),
        }
    }

    /// The query string as a form (a parameter sent twice → 422).
    pub fn query_params(&self) -> Result<Form, ApiError> {
        let query = self.query.as_deref().unwrap_or("");
        Form::from_pairs(
            form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
        )
    }

    /// Refuses secrets carried in the URL.
    pub fn refuse_secrets_in_query(&self) -> Result<(), ApiError> {
        let Some(query) = self.query.as_deref() else {
            return Ok(());
        };
        if form_urlencoded::parse(query.as_bytes())
            .any(|(k, _)| SECRET_PARAMS.contains(&k.as_ref()))
        {
            return Err(ApiError::BadRequest(
                "Secrets are not accepted in the URL query string".into(),
            ));
        }
        Ok(())
    }

    /// The bearer token of the `Authorization` header; missing or not a
    /// bearer → 401.
    pub fn bearer(&self) -> Result<&str, ApiError> {
        let value = self
            .header("authorization")
            .ok_or(ApiError::Unauthorized("Not authenticated"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(ApiError::Unauthorized("Not authenticated"))?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(ApiError::Unauthorized("Not authenticated"));
        }
        Ok(token)
    }

    /// `User-Agent`, cut to a sane length for storage.
    pub fn user_agent(&self) -> Option<String> {
        self.header("user-agent")
            .map(|ua| ua.chars().take(512).collect())
    }
}

/// Decodes `application/x-www-form-urlencoded` strictly: a value that does
/// not decode to UTF-8 is a 400, where the usual lossy decoding would
/// silently turn it into U+FFFD (and log a user in with another password).
fn parse_urlencoded(raw: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |part: &[u8]| -> Result<String, ApiError> {
        let spaced: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| ApiError::BadRequest("Form values must be UTF-8".into()))
    };
    raw.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// A JSON object body with typed field access.
pub struct JsonBody(Map<String, Value>);

impl JsonBody {
    /// A string field: `Ok(None)` when absent or null, 400 when another type.
    pub fn string(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::BadRequest(format!(
                "Field '{name}' must be a string"
            ))),
        }
    }
}

/// Form fields, each sent at most once.
#[derive(Debug)]
pub struct Form(HashMap<String, String>);

impl Form {
    fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Form, ApiError> {
        let mut fields = HashMap::new();
        let mut repeated = Vec::new();
        for (name, value) in pairs {
            match fields.entry(name) {
                Entry::Occupied(taken) => {
                    if !repeated
                        .iter()
                        .any(|e: &FieldError| e.field == *taken.key())
                    {
                        repeated.push(FieldError::new(
                            taken.key().clone(),
                            "must be sent only once",
                        ));
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
            }
        }
        if !repeated.is_empty() {
            return Err(ApiError::Validation(repeated));
        }
        Ok(Form(fields))
    }

    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// The "required field absent" entry of a 422.
pub fn missing(field: &str) -> FieldError {
    FieldError::new(field, "field required")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: &str, body: &'static [u8]) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", content_type.parse().expect("header"));
        Request {
            method: Method::POST,
            query: None,
            headers,
            body: Bytes::from_static(body),
            peer: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[tokio::test]
    async fn repeated_form_fields_are_refused() {
        let req = request(
            "application/x-www-form-urlencoded",
            b"username=a&password=b&password=c",
        );
        match req.form().await {
            Err(ApiError::Validation(errors)) => assert_eq!(errors[0].field, "password"),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn multipart_forms_parse() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\na@example.com\r\n--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\np w\r\n--XyZ--\r\n";
        let req = request("multipart/form-data; boundary=XyZ", body);
        let form = req.form().await.expect("form");
        assert_eq!(form.get("username"), Some("a@example.com"));
        assert_eq!(form.get("password"), Some("p w"));
    }

    #[test]
    fn urlencoded_values_decode_strictly() {
        let pairs = parse_urlencoded(b"a=x+y%21&b=&c&&d=%E2%9C%93").expect("valid");
        let expected = [("a", "x y!"), ("b", ""), ("c", ""), ("d", "\u{2713}")];
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);
        assert!(parse_urlencoded(b"password=%FF%FE").is_err());
    }

    #[test]
    fn json_needs_the_json_media_type_and_an_object() {
        assert!(matches!(
            request("text/plain", b"{}").json(),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            request("application/json", b"{").json(),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            request("application/json", b"[1]").json(),
            Err(ApiError::BadRequest(_))
        ));
        let body = request("application/json; charset=utf-8", br#"{"a":"x","b":1}"#)
            .json()
            .expect("json");
        assert_eq!(body.string("a").expect("a"), Some("x"));
        assert!(body.string("b").is_err());
        assert_eq!(body.string("c").expect("c"), None);
    }
}
