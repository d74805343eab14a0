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
    /// `POST /api/workspaces`
    CreateWorkspace,
    /// `GET /api/workspaces`
    ListWorkspaces,
}

/// One path template and the methods it answers.
pub struct RouteEntry {
    /// The template, `{name}` for a parameter segment.
    pub template: &'static str,
    /// The methods and their endpoints.
    pub methods: &'static [(&'static str, Endpoint)],
    /// The `Allow` header value: the methods, comma-separated.
    pub allow: &'static [&'static str],
}

/// The whole table.
pub static ROUTES: &[RouteEntry] = &[
    RouteEntry {
        template: "/health",
        methods: &[("GET", Endpoint::Health)],
        allow: &["GET"],
    },
    RouteEntry {
        template: "/ready",
        methods: &[("GET", Endpoint::Ready)],
        allow: &["GET"],
    },
    RouteEntry {
        template: "/api/auth/register",
        methods: &[("POST", Endpoint::Register)],
        allow: &["POST"],
    },
    RouteEntry {
        template: "/api/auth/login",
        methods: &[("POST", Endpoint::Login)],
        allow: &["POST"],
    },
    RouteEntry {
        template: "/api/auth/me",
        methods: &[("GET", Endpoint::Me)],
        allow: &["GET"],
    },
    RouteEntry {
        template: "/api/workspaces",
        methods: &[
            ("GET", Endpoint::ListWorkspaces),
            ("POST", Endpoint::CreateWorkspace),
        ],
        allow: &["GET", "POST"],
    },
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
    for entry in ROUTES {
        let Some(params) = match_template(entry.template, path) else {
            continue;
        };
        // HEAD is answered as GET would be, without the body (hyper drops it).
        let method = if method == "HEAD" { "GET" } else { method };
        return match entry.methods.iter().find(|(m, _)| *m == method) {
            Some((_, endpoint)) => Ok(Matched {
                endpoint: *endpoint,
                template: entry.template,
                params,
            }),
            None => Err((ApiError::MethodNotAllowed(entry.allow), entry.template)),
        };
    }
    Err((ApiError::NotFound, "unmatched"))
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
    fn parameters_are_captured() {
        assert_eq!(match_template("/a/{id}/b", "/a/42/b"), Some(vec!["42"]));
        assert_eq!(match_template("/a/{id}/b", "/a//b"), None);
        assert_eq!(match_template("/a/{id}", "/a/1/2"), None);
    }
}
