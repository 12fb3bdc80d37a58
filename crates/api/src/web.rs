//! The web dashboard, served by the binary itself at `/`.
//!
//! Release builds embed `frontend/dist` (build the frontend first: `npm --prefix frontend run
//! build`); debug builds read it from disk. `PAAS_WEB_DIR` serves another build directory
//! instead (what `just dev` and the browser tests use, so a fresh `npm run build` is served
//! without recompiling). Client-side routes (`/chat/…`, `/agents`, …) get `index.html`; the API
//! (`/api/…`, `/v1/…`) and the probes are never shadowed: an unknown API path is a JSON 404.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::not_found;
use crate::state::AppState;

#[derive(rust_embed::Embed)]
#[folder = "../../frontend/dist"]
#[allow_missing = true]
struct Assets;

/// The dashboard's Content-Security-Policy: everything from this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'";

/// Paths that belong to the API, never to the dashboard: also in any spelling a lenient client
/// or proxy might read as one (`/API/V1/…`, `//api/v1/…`, `/x/../api/…`, `/api;x/v1/…`,
/// `/api%2fv1/…`), which get the API's JSON 404, not the dashboard's page.
fn is_api(path: &str) -> bool {
    [path.to_owned(), normalise(path)].iter().any(|path| {
        ["/api/", "/v1/", "/healthz", "/readyz", "/metrics"]
            .iter()
            .any(|prefix| path == prefix.trim_end_matches('/') || path.starts_with(prefix))
    })
}

/// `path` percent-decoded (twice), in lower case, with backslashes as slashes, `;` parameters
/// and control characters dropped, and empty, `.` and `..` segments resolved.
fn normalise(path: &str) -> String {
    let decoded = percent_decode(&percent_decode(path)).to_lowercase();
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment: String = segment
            .split(';')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        match segment.trim() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut normalised = format!("/{}", segments.join("/"));
    if decoded.ends_with(['/', '\\']) && !segments.is_empty() {
        normalised.push('/');
    }
    normalised
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A file of the dashboard: from `PAAS_WEB_DIR` when set, else the built-in build.
async fn asset(dir: Option<&std::path::Path>, file: &str) -> Option<Vec<u8>> {
    match dir {
        None => Assets::get(file).map(|a| a.data.into_owned()),
        Some(dir) => {
            // Only plain path segments: no `..`, no absolute paths, nothing outside `dir`.
            let safe = file.split('/').all(|part| {
                !part.is_empty() && part != "." && part != ".." && !part.contains('\\')
            });
            if !safe {
                return None;
            }
            tokio::fs::read(dir.join(file)).await.ok()
        }
    }
}

/// The fallback service: a dashboard file, `index.html` for a client-side route, or the JSON
/// 404 of the API.
pub async fn dashboard(req: HttpRequest) -> HttpResponse {
    let dir = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.config.web_dir.clone());
    let dir = dir.as_deref();
    let path = req.path();
    if is_api(path) || !(req.method() == Method::GET || req.method() == Method::HEAD) {
        return not_found(req).await;
    }
    let file = path.trim_start_matches('/');
    if !file.is_empty()
        && let Some(data) = asset(dir, file).await
    {
        let mime = mime_guess::from_path(file).first_or_octet_stream();
        // Vite names built assets by their content hash: they never change.
        let cache = if file.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, mime.essence_str().to_owned()))
            .insert_header((header::CACHE_CONTROL, cache))
            .body(data);
    }
    // A missing file with an extension is a 404; anything else is a client-side route.
    let last = file.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return not_found(req).await;
    }
    match asset(dir, "index.html").await {
        Some(index) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ))
            .body(index),
        None => HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body(
                "The web dashboard is not built into this server. Build it with \
                 `npm --prefix frontend ci && npm --prefix frontend run build` (debug builds \
                 read frontend/dist at run time; release builds embed it when compiled). \
                 The API is available under /api/v1 and /v1.\n",
            ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_never_the_dashboards() {
        for path in [
            "/api/v1/me",
            "/api/",
            "/v1/models",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(is_api(path), "{path}");
        }
        for path in [
            "/",
            "/chat/123",
            "/agents",
            "/apiary",
            "/v1x",
            "/assets/index.js",
            "/chat/%2e%2e",
            "/settings/keys;x=1",
        ] {
            assert!(!is_api(path), "{path}");
        }
        // Other spellings of the API are the API's too.
        for path in [
            "/API/V1/users",
            "/Api/v1/users",
            "//api/v1/users",
            "/api//v1/users",
            "/x/../api/v1/users",
            "/x/%2e%2e/api/v1/users",
            "/api%2fv1%2fusers",
            "/api;x=1/v1/users",
            "/%61pi/v1/users",
            "/%2561pi/v1/users",
            "/api%00/v1/users",
            "/api\\v1\\users",
            "/./V1/models",
            "/HEALTHZ",
            "/metrics/",
            "/v1/..;/models",
        ] {
            assert!(is_api(path), "{path}");
        }
    }
}
