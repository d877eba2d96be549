//! The web page at `/`: one HTML document, its script and its styles (`api/web/`), built
//! into the binary so the page works offline and nothing it loads comes from elsewhere.
//! Plain HTML, CSS and a script without a build step: nothing to install, nothing to
//! bundle, and the page speaks only to this API (see docs/web.md).

use axum::{
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};

/// Where the page and its assets are served.
pub const PAGE_PATH: &str = "/";
pub const SCRIPT_PATH: &str = "/app.js";
pub const STYLES_PATH: &str = "/app.css";

const PAGE: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLES: &str = include_str!("../web/app.css");

/// The page runs only its own script and styles and talks only to its own origin; no
/// inline script, no framing, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The sign-in link to the page served at `base_url` (`http://127.0.0.1:3000`): the token
/// in the URL fragment, which browsers keep to themselves (never a query string, which
/// reaches servers and their logs).
pub fn sign_in_link(base_url: &str, token: &str) -> anyhow::Result<String> {
    let base = base_url.trim().trim_end_matches('/');
    let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
    if !scheme_ok || base.contains(['#', '?']) {
        anyhow::bail!(
            "the link's base URL must be an http:// or https:// address without a query or \
             fragment (for example http://127.0.0.1:3000), not {base_url:?}"
        );
    }
    Ok(format!("{base}{PAGE_PATH}#token={token}"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // A new binary serves new assets: the browser asks again each time.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// The web page: sign in with a token, manage tasks, talk to the chat.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "web_page",
    tag = "web",
    responses((status = 200, description = "The web page (its script and styles at /app.js and /app.css)", content_type = "text/html", body = String)),
)]
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// The web page's script.
#[utoipa::path(
    get,
    path = "/app.js",
    operation_id = "web_script",
    tag = "web",
    responses((status = 200, description = "The page's script", content_type = "text/javascript", body = String)),
)]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The web page's styles.
#[utoipa::path(
    get,
    path = "/app.css",
    operation_id = "web_styles",
    tag = "web",
    responses((status = 200, description = "The page's styles", content_type = "text/css", body = String)),
)]
pub async fn styles() -> Response {
    asset("text/css; charset=utf-8", STYLES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for path in [SCRIPT_PATH, STYLES_PATH] {
            assert!(PAGE.contains(&format!("\"{path}\"")), "{path}");
        }
        assert!(!PAGE.contains("<script>"), "no inline script");
        assert!(!PAGE.contains("style="), "no inline style");
        for text in [PAGE, SCRIPT, STYLES] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(!SCRIPT.contains("innerHTML"), "user text is set as text");
    }

    #[test]
    fn a_sign_in_link_carries_the_token_in_its_fragment() {
        assert_eq!(
            sign_in_link("http://127.0.0.1:3000/", "a.b.c").expect("a good base URL"),
            "http://127.0.0.1:3000/#token=a.b.c"
        );
        for bad in ["127.0.0.1:3000", "http://x/?a=1", "ftp://x", "http://x/#y"] {
            let err = sign_in_link(bad, "a.b.c")
                .expect_err("a bad base URL")
                .to_string();
            assert!(err.contains("base URL"), "{bad}: {err}");
        }
    }
}
