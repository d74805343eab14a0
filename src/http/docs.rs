//! The OpenAPI document, and Swagger UI and ReDoc pages to read it, all
//! served by the service itself: the JavaScript and CSS are vendored in
//! `assets/` and embedded in the binary, so the pages work with no internet
//! access and under a Content-Security-Policy that allows only this origin.
//! `DOCS_ENABLED=false` turns every one of them into a 404.

use std::fmt::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderName, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY};
use http::StatusCode;
use sha2::{Digest, Sha256};

use super::response::Reply;
use crate::error::ApiError;
use crate::state::AppState;

/// The contract of API.md as OpenAPI 3.1, written by hand; a test checks it
/// names exactly the routes of [`super::router::ROUTES`].
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

const JSON: &str = "application/json; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Swagger UI: scripts from here only (its initialiser is a served file),
/// inline style attributes (its components set them), `data:` images (its
/// icons), and requests to this origin only ("Try it out", the token URL).
const SWAGGER_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// ReDoc: as Swagger UI, plus a `blob:` web worker for its search index
/// (styled-components injects `<style>` elements, hence inline styles).
const REDOC_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Asset URLs carry a digest of the assets, so they can be cached for a
/// year and still change with the next release.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// Every file under `/docs/assets/`: name, bytes, content type.
static ASSETS: &[(&str, &[u8], &str)] = &[
    (
        "swagger-ui-bundle.js",
        include_bytes!("../../assets/swagger-ui-bundle.js"),
        JAVASCRIPT,
    ),
    (
        "swagger-ui.css",
        include_bytes!("../../assets/swagger-ui.css"),
        CSS,
    ),
    (
        "swagger-initializer.js",
        include_bytes!("../../assets/swagger-initializer.js"),
        JAVASCRIPT,
    ),
    (
        "redoc.standalone.js",
        include_bytes!("../../assets/redoc.standalone.js"),
        JAVASCRIPT,
    ),
    (
        "swagger-ui-bundle.js.LICENSE.txt",
        include_bytes!("../../assets/swagger-ui-bundle.js.LICENSE.txt"),
        TEXT,
    ),
    (
        "swagger-ui.LICENSE",
        include_bytes!("../../assets/swagger-ui.LICENSE"),
        TEXT,
    ),
    (
        "swagger-ui.NOTICE",
        include_bytes!("../../assets/swagger-ui.NOTICE"),
        TEXT,
    ),
    (
        "redoc.standalone.js.LICENSE.txt",
        include_bytes!("../../assets/redoc.standalone.js.LICENSE.txt"),
        TEXT,
    ),
    (
        "redoc.LICENSE",
        include_bytes!("../../assets/redoc.LICENSE"),
        TEXT,
    ),
];

/// The two HTML pages, rendered once with the assets' digest in their URLs.
struct Pages {
    swagger_ui: Bytes,
    redoc: Bytes,
}

static PAGES: OnceLock<Pages> = OnceLock::new();

fn pages() -> &'static Pages {
    PAGES.get_or_init(|| {
        let mut digest = Sha256::new();
        for (name, bytes, _) in ASSETS {
            digest.update(name.as_bytes());
            digest.update(bytes);
        }
        let version = digest.finalize()[..6]
            .iter()
            .fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            });
        let swagger_ui = format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Auth Service API - Swagger UI</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css?v={version}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js?v={version}"></script>
<script src="/docs/assets/swagger-initializer.js?v={version}"></script>
</body>
</html>
"#
        );
        let redoc = format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Auth Service API - ReDoc</title>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js?v={version}"></script>
</body>
</html>
"#
        );
        Pages {
            swagger_ui: Bytes::from(swagger_ui),
            redoc: Bytes::from(redoc),
        }
    })
}

fn enabled(app: &AppState) -> Result<(), ApiError> {
    if app.config.docs_enabled {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// `GET /openapi.json`.
pub fn openapi(app: &AppState) -> Result<Reply, ApiError> {
    enabled(app)?;
    Ok(Reply::raw(
        StatusCode::OK,
        Bytes::from_static(OPENAPI_JSON.as_bytes()),
        JSON,
    )
    .with_header(CACHE_CONTROL, "no-cache"))
}

/// `GET /docs`: Swagger UI.
pub fn swagger_ui(app: &AppState) -> Result<Reply, ApiError> {
    enabled(app)?;
    Ok(page(pages().swagger_ui.clone(), SWAGGER_CSP))
}

/// `GET /redoc`: ReDoc.
pub fn redoc(app: &AppState) -> Result<Reply, ApiError> {
    enabled(app)?;
    Ok(page(pages().redoc.clone(), REDOC_CSP))
}

fn page(html: Bytes, csp: &str) -> Reply {
    Reply::raw(StatusCode::OK, html, HTML)
        .with_header(CONTENT_SECURITY_POLICY, csp)
        .with_header(REFERRER_POLICY, "no-referrer")
        .with_header(CACHE_CONTROL, "no-cache")
}

/// `GET /docs/assets/{file}`: one of the vendored files; anything else 404.
pub fn asset(app: &AppState, params: &[&str]) -> Result<Reply, ApiError> {
    enabled(app)?;
    let name = params.first().ok_or(ApiError::NotFound)?;
    let (_, bytes, content_type) = ASSETS
        .iter()
        .find(|(candidate, _, _)| candidate == name)
        .ok_or(ApiError::NotFound)?;
    Ok(
        Reply::raw(StatusCode::OK, Bytes::from_static(bytes), content_type)
            .with_header(CACHE_CONTROL, ASSET_CACHE)
            .with_header(
                HeaderName::from_static("cross-origin-resource-policy"),
                "same-origin",
            ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_of_this_version() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn pages_load_only_served_assets() {
        for html in [&pages().swagger_ui, &pages().redoc] {
            let html = std::str::from_utf8(html).expect("utf-8");
            assert!(!html.contains("<script>"), "no inline script");
            for src in html
                .split("src=\"")
                .skip(1)
                .chain(html.split("href=\"").skip(1))
            {
                let url = &src[..src.find('"').expect("closing quote")];
                let file = url
                    .strip_prefix("/docs/assets/")
                    .and_then(|f| f.split('?').next())
                    .expect("an asset URL");
                assert!(ASSETS.iter().any(|(name, _, _)| *name == file), "{file}");
            }
        }
    }
}
