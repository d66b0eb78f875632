//! Signing in and out: a tenant (or admin) token for a session cookie.
//!
//! The cookie holds a random session id only (HttpOnly, SameSite=Lax,
//! `Secure` when the server listens with TLS); the token stays in the
//! server's memory and is checked again on every request, so a token a
//! reload removed ends its sessions. Every form carries the session's CSRF
//! token and every POST checks it (the sign-in form a cookie-bound one of
//! its own): a page of another site cannot act in a signed-in browser.

use crate::{Principal, Ui, UiError};
use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;

/// The session cookie's name.
pub const COOKIE: &str = "herald_session";
/// The sign-in form's CSRF cookie.
const LOGIN_COOKIE: &str = "herald_login";
/// A session unused for this long ends.
const IDLE_MS: i64 = 12 * 3600 * 1000;
/// At most this many sessions; the least recently used go first.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser.
#[derive(Clone)]
struct Stored {
    token: String,
    tenant: String,
    admin: bool,
    csrf: String,
    last_ms: i64,
}

/// The sessions of the UI, in memory (a restart signs everyone out).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Stored>>,
}

/// Random hex, 32 bytes.
fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Compares secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    fn create(&self, token: String, tenant: String, admin: bool) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = herald_journal::now_ms();
        map.retain(|_, s| now - s.last_ms < IDLE_MS);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Stored {
                token,
                tenant,
                admin,
                csrf: csrf.clone(),
                last_ms: now,
            },
        );
        (id, csrf)
    }

    fn get(&self, id: &str) -> Option<Stored> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = herald_journal::now_ms();
        let s = map.get_mut(id)?;
        if now - s.last_ms >= IDLE_MS {
            map.remove(id);
            return None;
        }
        s.last_ms = now;
        Some(s.clone())
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Number of live sessions (tests).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(ui: &Ui, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if ui.host.tls() {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A signed-in request: its tenant and the CSRF token its forms carry.
/// A request without a live session is sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub tenant: String,
    pub admin: bool,
    pub csrf: String,
}

impl Session {
    /// Checks a form's CSRF token.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), UiError> {
        match sent {
            Some(t) if same(t, &self.csrf) => Ok(()),
            Some(_) => Err(UiError::Forbidden(
                "the form's CSRF token is wrong: reload the page and try again".into(),
            )),
            None => Err(UiError::Forbidden(
                "the form has no CSRF token: reload the page and try again".into(),
            )),
        }
    }
}

/// Where a request without a session goes.
pub struct SignIn(Response);

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<Ui> for Session {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Self::Rejection> {
        let found = cookie(&parts.headers, COOKIE).and_then(|id| {
            let s = ui.sessions.get(id)?;
            // The token must still be what it was (a reload may remove it).
            let ok = match ui.host.principal(&s.token)? {
                Principal::Tenant(t) => !s.admin && t == s.tenant,
                Principal::Admin => s.admin,
            };
            if !ok {
                ui.sessions.remove(id);
                return None;
            }
            Some(Session {
                id: id.to_string(),
                tenant: s.tenant,
                admin: s.admin,
                csrf: s.csrf,
            })
        });
        found.ok_or_else(|| {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let to = format!("/login?next={}", crate::view::url(next));
            // htmx polling follows redirects silently: make it reload instead.
            let mut r = Redirect::to(&to).into_response();
            if parts.headers.contains_key("hx-request") {
                if let Ok(v) = HeaderValue::from_str(&to) {
                    r.headers_mut().insert("hx-redirect", v);
                }
            }
            SignIn(r)
        })
    }
}

/// Where to go after signing in: a path of this site only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/runs".to_string(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    tenants: Vec<String>,
    error: Option<String>,
}

/// `GET /login`'s query.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(ui: &Ui, next: String, error: Option<String>, status: StatusCode) -> Response {
    let csrf = random_hex();
    let page = LoginPage {
        csrf: csrf.clone(),
        next,
        tenants: ui.host.tenants(),
        error,
    };
    match page.render() {
        Ok(body) => (
            status,
            [(
                header::SET_COOKIE,
                set_cookie(ui, LOGIN_COOKIE, &csrf, None),
            )],
            Html(body),
        )
            .into_response(),
        Err(e) => UiError::from(e).into_response(),
    }
}

/// `GET /login`: the sign-in form.
pub async fn login_form(State(ui): State<Ui>, Query(q): Query<LoginQuery>) -> Response {
    login_page(&ui, safe_next(q.next.as_deref()), None, StatusCode::OK)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /login`: a token for a session.
pub async fn login(State(ui): State<Ui>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    let expected = cookie(&headers, LOGIN_COOKIE);
    match (expected, f.csrf.as_deref()) {
        (Some(e), Some(s)) if same(e, s) => {}
        _ => {
            return login_page(
                &ui,
                next,
                Some("The sign-in form expired or came from another site: try again.".into()),
                StatusCode::FORBIDDEN,
            )
        }
    }
    let token = f.token.trim().to_string();
    let (tenant, admin) = match ui.host.principal(&token) {
        Some(Principal::Tenant(t)) => (t, false),
        Some(Principal::Admin) => {
            let tenants = ui.host.tenants();
            match f.tenant.as_deref().filter(|t| !t.is_empty()) {
                Some(t) if tenants.iter().any(|x| x == t) => (t.to_string(), true),
                Some(t) => {
                    return login_page(
                        &ui,
                        next,
                        Some(format!("No tenant {t:?}.")),
                        StatusCode::BAD_REQUEST,
                    )
                }
                None => {
                    return login_page(
                        &ui,
                        next,
                        Some("An admin token signs in to one tenant: choose it.".into()),
                        StatusCode::BAD_REQUEST,
                    )
                }
            }
        }
        None => {
            return login_page(
                &ui,
                next,
                Some("Unknown token.".into()),
                StatusCode::UNAUTHORIZED,
            )
        }
    };
    let (id, _) = ui.sessions.create(token, tenant, admin);
    let mut r = Redirect::to(&next).into_response();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&ui, COOKIE, &id, Some(IDLE_MS / 1000)),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&ui, LOGIN_COOKIE, "", Some(0)),
    );
    r
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(ui): State<Ui>,
    s: Session,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    s.check_csrf(f.csrf.as_deref())?;
    ui.sessions.remove(&s.id);
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&ui, COOKIE, "", Some(0)));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/runs/abc?x=1")), "/runs/abc?x=1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "runs"] {
            assert_eq!(safe_next(Some(bad)), "/runs", "{bad}");
        }
        assert_eq!(safe_next(None), "/runs");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; herald_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
