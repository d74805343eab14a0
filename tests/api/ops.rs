//! The operations surface: `/metrics`, `/openapi.json` (checked against
//! the route table and against real responses), `/docs`, `/redoc` and
//! their assets, and the switches that turn them off.

use std::collections::BTreeSet;

use auth_service::http::router::ROUTES;
use reqwest::Response;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, unique_email, TestApp, PASSWORD};

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// `/a/{id}/b` and `/a/{sid}/b` are the same route: parameter names aside.
fn normalise(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn openapi(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    response.json().await.expect("json")
}

async fn get(app: &TestApp, path: &str) -> Response {
    app.client.get(app.url(path)).send().await.expect("request")
}

async fn metrics_text(app: &TestApp) -> String {
    let response = get(app, "/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.expect("text")
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes_of_the_router() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|entry| {
            entry
                .methods
                .iter()
                .map(|(method, _)| (method.to_ascii_lowercase(), normalise(entry.template)))
        })
        .collect();
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (key, operation) in item.as_object().expect("path item") {
            if METHODS.contains(&key.as_str()) {
                documented.insert((key.clone(), normalise(path)));
                assert!(
                    operation["responses"]
                        .as_object()
                        .is_some_and(|r| !r.is_empty()),
                    "{key} {path} has responses"
                );
            }
        }
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );

    // Every reference points somewhere, so viewers render the whole thing.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for reference in refs {
        assert!(resolve(&doc, &reference).is_some(), "dangling {reference}");
    }
    // Operation ids are unique: generated clients need that.
    let mut ids = BTreeSet::new();
    for item in paths.values() {
        for (key, operation) in item.as_object().expect("path item") {
            if METHODS.contains(&key.as_str()) {
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            }
        }
    }
}

#[tokio::test]
async fn openapi_declares_the_password_flow_and_service_keys() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["OAuth2Password"]["flows"]["password"]["tokenUrl"],
        "/api/auth/login"
    );
    assert_eq!(schemes["ServiceKey"]["type"], "http");
    assert_eq!(schemes["ServiceKey"]["scheme"], "bearer");
    assert_eq!(
        doc["paths"]["/api/auth/introspect"]["post"]["security"],
        json!([{ "ServiceKey": [] }])
    );
    assert_eq!(
        doc["paths"]["/api/auth/me"]["get"]["security"],
        json!([{ "OAuth2Password": [] }])
    );
    let login = &doc["paths"]["/api/auth/login"]["post"]["requestBody"]["content"];
    assert!(login["application/x-www-form-urlencoded"].is_object());
    let validation = &doc["components"]["schemas"]["ValidationError"];
    assert!(validation["required"]
        .as_array()
        .expect("required")
        .contains(&json!("errors")));
}

#[tokio::test]
async fn real_responses_match_their_documented_schemas() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let email = unique_email();

    let response = app.register(&email, PASSWORD).await;
    check(&doc, "post", "/api/auth/register", response).await;

    let response = app.login(&email, PASSWORD).await;
    let tokens = check(&doc, "post", "/api/auth/login", response).await;
    let token = tokens["access_token"].as_str().expect("token");

    let response = app.me(token).await;
    let me = check(&doc, "get", "/api/auth/me", response).await;
    assert_eq!(me["email"], email);

    let response = app
        .create_workspace(token, &json!({ "name": "Documented", "plan_tier": "pro" }))
        .await;
    check(&doc, "post", "/api/workspaces", response).await;

    let response = app.get_auth("/api/workspaces", token).await;
    check(&doc, "get", "/api/workspaces", response).await;

    let response = app.get_auth("/api/auth/sessions", token).await;
    check(&doc, "get", "/api/auth/sessions", response).await;

    let response = get(&app, "/.well-known/openid-configuration").await;
    check(&doc, "get", "/.well-known/openid-configuration", response).await;

    let response = app
        .register_raw(&json!({ "email": "not-an-address", "password": "short" }))
        .await;
    let error = check(&doc, "post", "/api/auth/register", response).await;
    assert_eq!(error["code"], "validation_error");
    assert_eq!(error["errors"].as_array().map(Vec::len), Some(2), "{error}");

    let response = app.me("not-a-token").await;
    check(&doc, "get", "/api/auth/me", response).await;
}

/// Asserts `response` has a status documented for the operation and a body
/// that matches the documented schema; returns the body.
async fn check(doc: &Value, method: &str, path: &str, response: Response) -> Value {
    let status = response.status().as_u16().to_string();
    let operation = &doc["paths"][path][method];
    let documented = &operation["responses"][&status];
    assert!(
        documented.is_object(),
        "{method} {path} answered {status}, which is not documented"
    );
    let documented = deref(doc, documented);
    let body: Value = response.json().await.expect("json body");
    let schema = &documented["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status} has a JSON schema"
    );
    let mut errors = Vec::new();
    validate(doc, schema, &body, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:#?}\nbody: {body}"
    );
    body
}

fn deref<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value["$ref"].as_str() {
        Some(reference) => deref(
            doc,
            resolve(doc, reference).unwrap_or_else(|| panic!("dangling {reference}")),
        ),
        None => value,
    }
}

fn resolve<'d>(doc: &'d Value, reference: &str) -> Option<&'d Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(reference)) => out.push(reference.clone()),
                    _ => collect_refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

/// The JSON Schema keywords the document uses, enough to catch a response
/// that drifts from it: `$ref`, `allOf`, `oneOf`, `type` (one or a list),
/// `enum`, `const`, `required`, `properties`, `items`, `format` (`uuid`,
/// `date-time`), and fields the schema does not document at all.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = deref(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        for part in all {
            validate_shallow(doc, part, value, at, errors);
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let matching = one
            .iter()
            .filter(|part| {
                let mut sink = Vec::new();
                validate(doc, part, value, at, &mut sink);
                sink.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!("{at}: matches {matching} of oneOf"));
        }
    }
    validate_shallow(doc, schema, value, at, errors);
    if let Value::Object(map) = value {
        let mut known = BTreeSet::new();
        documented_properties(doc, schema, &mut known);
        if !known.is_empty() {
            for key in map.keys().filter(|key| !known.contains(key.as_str())) {
                errors.push(format!("{at}.{key}: not documented"));
            }
        }
    }
}

fn documented_properties(doc: &Value, schema: &Value, out: &mut BTreeSet<String>) {
    let schema = deref(doc, schema);
    if let Some(properties) = schema["properties"].as_object() {
        out.extend(properties.keys().cloned());
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        documented_properties(doc, part, out);
    }
}

fn validate_shallow(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    errors: &mut Vec<String>,
) {
    let schema = deref(doc, schema);
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
        errors.push(format!("{at}: {value} is not {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    if !schema["const"].is_null() && schema["const"] != *value {
        errors.push(format!("{at}: {value} is not {}", schema["const"]));
    }
    if let (Some(format), Some(text)) = (schema["format"].as_str(), value.as_str()) {
        let ok = match format {
            "uuid" => Uuid::parse_str(text).is_ok(),
            "date-time" => {
                chrono::DateTime::parse_from_rfc3339(text).is_ok() && text.ends_with('Z')
            }
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {text:?} is not a {format}"));
        }
    }
    if let Value::Object(map) = value {
        for field in schema["required"].as_array().into_iter().flatten() {
            let field = field.as_str().unwrap_or_default();
            if !map.contains_key(field) {
                errors.push(format!("{at}.{field}: required but missing"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (key, inner) in map {
                if let Some(property) = properties.get(key) {
                    validate(doc, property, inner, &format!("{at}.{key}"), errors);
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (n, item) in items.iter().enumerate() {
            validate(doc, item_schema, item, &format!("{at}[{n}]"), errors);
        }
    }
}

fn has_type(value: &Value, wanted: &str) -> bool {
    match wanted {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_never_by_raw_path() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let id = Uuid::new_v4();
    let response = app.get_auth(&format!("/api/workspaces/{id}"), &token).await;
    assert_eq!(response.status(), 404);
    let response = get(&app, &format!("/no/such/{id}")).await;
    assert_eq!(response.status(), 404);

    let text = metrics_text(&app).await;
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/api/workspaces/{id}",status="404"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"http_requests_total{method="POST",route="/api/auth/register",status="201"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{method="POST",route="/api/auth/login",le="+Inf"}"#),
        "{text}"
    );
    assert!(
        !text.contains(&id.to_string()),
        "a raw path leaked into a label"
    );
    for series in [
        "hash_queue_depth ",
        "hash_running ",
        "hash_rejected_total ",
        "hash_queue_wait_mean_seconds ",
        "db_pool_size ",
        "db_pool_available ",
        "db_pool_waiting ",
        "actor_restarts_total ",
        r#"cache_entries{cache="users"} "#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
    // register + login hashed at least twice on this instance.
    let completed = text
        .lines()
        .find_map(|line| line.strip_prefix("hash_completed_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("hash_completed_total");
    assert!(completed >= 2, "{completed}");
}

#[tokio::test]
async fn cache_hits_and_misses_are_counted_per_cache() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let workspace: serde_json::Value = app
        .create_workspace(&token, &serde_json::json!({ "name": "Metered" }))
        .await
        .json()
        .await
        .expect("json");
    let path = format!("/api/workspaces/{}", workspace["id"].as_str().expect("id"));
    for _ in 0..3 {
        assert_eq!(app.get_auth(&path, &token).await.status(), 200);
    }
    let text = metrics_text(&app).await;
    // The counters are process-wide (tests share them), so only their presence and growth is checked.
    let value = |series: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(series))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    };
    assert!(value(r#"cache_misses_total{cache="memberships"} "#) >= 1.0);
    assert!(
        value(r#"cache_hits_total{cache="memberships"} "#) >= 2.0,
        "repeat checks hit the role cache"
    );
    assert!(value(r#"cache_hits_total{cache="users"} "#) >= 3.0);
    assert!(value("audit_events_pending ") >= 0.0);
    assert_eq!(value("audit_events_dropped_total "), 0.0);
}

#[tokio::test]
async fn metrics_can_be_switched_off() {
    let app = spawn_app_with(|settings| {
        settings.insert("METRICS_ENABLED".into(), "false".into());
    })
    .await;
    assert_error(get(&app, "/metrics").await, 404, "not_found").await;
    // The docs are a separate switch.
    assert_eq!(get(&app, "/openapi.json").await.status(), 200);
}

#[tokio::test]
async fn docs_can_be_switched_off() {
    let app = spawn_app_with(|settings| {
        settings.insert("DOCS_ENABLED".into(), "false".into());
    })
    .await;
    for path in [
        "/docs",
        "/redoc",
        "/openapi.json",
        "/docs/assets/swagger-ui-bundle.js",
    ] {
        assert_error(get(&app, path).await, 404, "not_found").await;
    }
    assert_eq!(get(&app, "/metrics").await.status(), 200);
}

#[tokio::test]
async fn docs_pages_carry_a_csp_and_no_referrer() {
    let app = spawn_app().await;
    for path in ["/docs", "/redoc"] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(
            csp.contains("script-src 'self';"),
            "no inline scripts: {csp}"
        );
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        let html = response.text().await.expect("html");
        assert!(!html.contains("<script>"), "no inline script in {path}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing from elsewhere"
        );
        // Every asset the page loads is served.
        for url in html
            .split("src=\"")
            .chain(html.split("href=\""))
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|url| url.starts_with('/'))
        {
            assert_eq!(get(&app, url).await.status(), 200, "{url} of {path}");
        }
    }
}

#[tokio::test]
async fn assets_are_served_with_their_content_type_and_cached() {
    let app = spawn_app().await;
    for (file, content_type) in [
        ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("swagger-initializer.js", "text/javascript; charset=utf-8"),
        ("redoc.standalone.js", "text/javascript; charset=utf-8"),
        ("swagger-ui.css", "text/css; charset=utf-8"),
        ("redoc.LICENSE", "text/plain; charset=utf-8"),
    ] {
        let response = get(&app, &format!("/docs/assets/{file}")).await;
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(response.headers()["content-type"], content_type, "{file}");
        let cache = response.headers()["cache-control"].to_str().expect("ascii");
        assert!(cache.contains("max-age=31536000"), "{file}: {cache}");
        assert!(!response.bytes().await.expect("body").is_empty(), "{file}");
    }
    for missing in ["nope.js", "..%2Fopenapi.json", "swagger-ui-bundle.js.map"] {
        assert_error(
            get(&app, &format!("/docs/assets/{missing}")).await,
            404,
            "not_found",
        )
        .await;
    }
}
