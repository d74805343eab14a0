//! The route table: (method, path segments) → endpoint. One table, so the
//! 404/405 logic, the `Allow` header and the route templates used as metric
//! labels all come from the same place.

use crate::error::ApiError;

/// Every endpoint the service serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health`
    Health,
    /// `GET /ready`
    Ready,
    /// `POST /api/auth/register`
    Register,
    /// `POST /api/auth/login`
    Login,
    /// `GET /api/auth/me`
    Me,
    /// `POST /api/auth/verify-email/request`
    VerifyEmailRequest,
    /// `POST /api/auth/verify-email/confirm`
    VerifyEmailConfirm,
    /// `POST /api/auth/password-reset/request`
    PasswordResetRequest,
    /// `POST /api/auth/password-reset/confirm`
    PasswordResetConfirm,
    /// `POST /api/auth/password/change`
    PasswordChange,
    /// `GET /api/auth/audit`
    MyAudit,
    /// `GET /api/workspaces/{id}/audit`
    WorkspaceAudit,
    /// `POST /api/auth/refresh`
    Refresh,
    /// `POST /api/auth/logout`
    Logout,
    /// `POST /api/auth/introspect`
    Introspect,
    /// `GET /api/auth/sessions`
    ListSessions,
    /// `DELETE /api/auth/sessions/{sid}`
    EndSession,
    /// `GET /metrics`
    Metrics,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /docs`
    SwaggerUi,
    /// `GET /redoc`
    Redoc,
    /// `GET /docs/assets/{file}`: the vendored Swagger UI and ReDoc files.
    DocsAsset,
    /// `GET /.well-known/jwks.json`
    Jwks,
    /// `GET /.well-known/openid-configuration`
    OpenIdConfiguration,
    /// `POST /api/workspaces`
    CreateWorkspace,
    /// `GET /api/workspaces`
    ListWorkspaces,
    /// `GET /api/workspaces/{id}`
    GetWorkspace,
    /// `PATCH /api/workspaces/{id}`
    UpdateWorkspace,
    /// `DELETE /api/workspaces/{id}`
    DeleteWorkspace,
    /// `GET /api/workspaces/{id}/members`
    ListMembers,
    /// `POST /api/workspaces/{id}/members`
    AddMember,
    /// `GET /api/workspaces/{id}/members/me`
    MyMembership,
    /// `PATCH /api/workspaces/{id}/members/{user_id}`
    UpdateMember,
    /// `DELETE /api/workspaces/{id}/members/{user_id}`
    RemoveMember,
}

/// One path template and the methods it answers.
pub struct RouteEntry {
    /// The template, `{name}` for a parameter segment.
    pub template: &'static str,
    /// The methods and their endpoints.
    pub methods: &'static [(&'static str, Endpoint)],
    /// The `Allow` header value: the methods.
    pub allow: &'static [&'static str],
}

macro_rules! route {
    ($template:literal, $($method:literal => $endpoint:ident),+) => {
        RouteEntry {
            template: $template,
            methods: &[$(($method, Endpoint::$endpoint)),+],
            allow: &[$($method),+],
        }
    };
}

/// The whole table. A literal segment wins over a parameter because
/// entries are tried in order (`members/me` before `members/{user_id}`).
pub static ROUTES: &[RouteEntry] = &[
    route!("/health", "GET" => Health),
    route!("/ready", "GET" => Ready),
    route!("/metrics", "GET" => Metrics),
    route!("/openapi.json", "GET" => OpenApi),
    route!("/docs", "GET" => SwaggerUi),
    route!("/redoc", "GET" => Redoc),
    route!("/docs/assets/{file}", "GET" => DocsAsset),
    route!("/api/auth/register", "POST" => Register),
    route!("/api/auth/login", "POST" => Login),
    route!("/api/auth/me", "GET" => Me),
    route!("/api/auth/verify-email/request", "POST" => VerifyEmailRequest),
    route!("/api/auth/verify-email/confirm", "POST" => VerifyEmailConfirm),
    route!("/api/auth/password-reset/request", "POST" => PasswordResetRequest),
    route!("/api/auth/password-reset/confirm", "POST" => PasswordResetConfirm),
    route!("/api/auth/password/change", "POST" => PasswordChange),
    route!("/api/auth/audit", "GET" => MyAudit),
    route!("/api/auth/refresh", "POST" => Refresh),
    route!("/api/auth/logout", "POST" => Logout),
    route!("/api/auth/introspect", "POST" => Introspect),
    route!("/api/auth/sessions", "GET" => ListSessions),
    route!("/api/auth/sessions/{sid}", "DELETE" => EndSession),
    route!("/.well-known/jwks.json", "GET" => Jwks),
    route!("/.well-known/openid-configuration", "GET" => OpenIdConfiguration),
    route!("/api/workspaces", "GET" => ListWorkspaces, "POST" => CreateWorkspace),
    route!("/api/workspaces/{id}", "GET" => GetWorkspace, "PATCH" => UpdateWorkspace, "DELETE" => DeleteWorkspace),
    route!("/api/workspaces/{id}/audit", "GET" => WorkspaceAudit),
    route!("/api/workspaces/{id}/members", "GET" => ListMembers, "POST" => AddMember),
    route!("/api/workspaces/{id}/members/me", "GET" => MyMembership),
    route!("/api/workspaces/{id}/members/{user_id}", "PATCH" => UpdateMember, "DELETE" => RemoveMember),
];

/// A matched route: the endpoint, its template, and the parameter segments.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'p> {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The template (a low-cardinality label).
    pub template: &'static str,
    /// Values of the `{…}` segments, in order.
    pub params: Vec<&'p str>,
}

/// Finds the endpoint for `method` and `path`: unknown path → 404, known
/// path with another method → 405 with its `Allow` list.
pub fn resolve<'p>(method: &str, path: &'p str) -> Result<Matched<'p>, (ApiError, &'static str)> {
    // One trailing slash is tolerated, as most clients expect.
    let path = match path.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => path,
    };
    // HEAD is answered as GET would be, without the body (hyper drops it).
    let method = if method == "HEAD" { "GET" } else { method };
    let mut not_allowed = None;
    for entry in ROUTES {
        let Some(params) = match_template(entry.template, path) else {
            continue;
        };
        match entry.methods.iter().find(|(m, _)| *m == method) {
            Some((_, endpoint)) => {
                return Ok(Matched {
                    endpoint: *endpoint,
                    template: entry.template,
                    params,
                })
            }
            // A later, more general template may still take this method.
            None => {
                not_allowed
                    .get_or_insert((ApiError::MethodNotAllowed(entry.allow), entry.template));
            }
        }
    }
    Err(not_allowed.unwrap_or((ApiError::NotFound, "unmatched")))
}

fn match_template<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return None;
                }
                params.push(g);
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_resolve_and_other_methods_are_405_with_allow() {
        let m = resolve("GET", "/api/workspaces").expect("route");
        assert_eq!(m.endpoint, Endpoint::ListWorkspaces);
        assert_eq!(
            resolve("POST", "/api/workspaces/").expect("slash").endpoint,
            Endpoint::CreateWorkspace
        );
        match resolve("DELETE", "/api/auth/me") {
            Err((ApiError::MethodNotAllowed(allow), "/api/auth/me")) => assert_eq!(allow, &["GET"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve("GET", "/api/nothing"),
            Err((ApiError::NotFound, _))
        ));
        assert!(matches!(
            resolve("GET", "/api/auth/me/extra"),
            Err((ApiError::NotFound, _))
        ));
        assert!(matches!(resolve("GET", "//"), Err((ApiError::NotFound, _))));
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let m = resolve("GET", "/api/workspaces/abc/members/me").expect("route");
        assert_eq!(m.endpoint, Endpoint::MyMembership);
        let m = resolve("PATCH", "/api/workspaces/abc/members/42").expect("route");
        assert_eq!(
            (m.endpoint, m.params),
            (Endpoint::UpdateMember, vec!["abc", "42"])
        );
        // `me` only answers GET; DELETE falls through to the {user_id} route.
        let m = resolve("DELETE", "/api/workspaces/abc/members/me").expect("route");
        assert_eq!(
            (m.endpoint, m.params),
            (Endpoint::RemoveMember, vec!["abc", "me"])
        );
        match resolve("PUT", "/api/workspaces/abc/members/me") {
            Err((ApiError::MethodNotAllowed(allow), _)) => assert_eq!(allow, &["GET"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parameters_are_captured() {
        assert_eq!(match_template("/a/{id}/b", "/a/42/b"), Some(vec!["42"]));
        assert_eq!(match_template("/a/{id}/b", "/a//b"), None);
        assert_eq!(match_template("/a/{id}", "/a/1/2"), None);
    }
}
