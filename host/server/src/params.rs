//! Request parameters the areas share: ids in paths, query strings, digits
//! in them, and the 400 that names the parameter.
//!
//! Query strings: axum-extra's `Query` (serde_html_form) into a
//! `#[serde(deny_unknown_fields)]` struct per endpoint; [`parsed`] turns its
//! rejection into the JSON 400 `invalid_parameter` naming the parameter in
//! `field`. Handlers take `Result<Query<T>, QueryRejection>` and call
//! [`parsed`] after the token check, so a request without a valid token is a
//! 401 whatever its query string says.
//!
//! A parameter given once is a field `#[serde(default, deserialize_with =
//! "once")] Option<String>`: serde_html_form reads an empty value (`status=`)
//! of a plain `Option` as absent, and the API refuses it instead (the
//! handlers say "must not be empty"). A repeatable one is a `Vec<String>`
//! with `#[serde(default)]`; a single-valued one given twice is refused.

use crate::error::ApiError;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum_extra::extract::{Query, QueryRejection};
use serde::{Deserialize, Deserializer};

/// The JSON 400 naming the parameter `field`.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let mut e = ApiError::bad_request("invalid_parameter", message);
    e.field = Some(field.to_string());
    e
}

/// A non-negative integer written as digits only (`+5`, ` 5` and `5.0` are
/// not, as in the OpenAPI document).
pub(crate) fn digits(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The `{id}` of a path, or the JSON 400 naming it: axum's own rejection
/// (a path that is not UTF-8 once decoded, `%FF`) is plain text.
pub(crate) fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match id {
        Ok(Path(id)) if id.is_empty() => Err(invalid("id", "the id must not be empty")),
        Ok(Path(id)) => Ok(id),
        Err(e) => Err(invalid(
            "id",
            format!("the id in the path is not valid: {}", e.body_text()),
        )),
    }
}

/// The error serde_html_form reports through serde_path_to_error: it knows
/// the parameter whose value failed.
type PathError = serde_path_to_error::Error<serde::de::value::Error>;

/// The parsed query, or the 400 naming the parameter.
pub(crate) fn parsed<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|e| rejection(&e))
}

/// `deserialize_with` of a parameter given at most once: present (even
/// empty) is `Some`, absent is `None` (with `#[serde(default)]`).
pub(crate) fn once<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// The text between the first pair of backticks after `prefix` (serde's
/// `unknown field `x`, expected ...`).
fn quoted<'a>(msg: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = msg.strip_prefix(prefix)?;
    let (name, after) = rest.split_once('`')?;
    Some((name, after))
}

fn rejection(e: &QueryRejection) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut found = None;
    while let Some(s) = source {
        if let Some(p) = s.downcast_ref::<PathError>() {
            found = Some(p);
            break;
        }
        source = s.source();
    }
    let Some(p) = found else {
        return invalid("query", format!("invalid query: {}", e.body_text()));
    };
    let msg = p.inner().to_string();
    // serde's wording for deny_unknown_fields, the one error without a path.
    if let Some((name, after)) = quoted(&msg, "unknown field `") {
        let takes = after
            .trim_start_matches(',')
            .trim()
            .trim_start_matches("expected ")
            .replace('`', "");
        let takes = if takes == "there are no fields" {
            "this endpoint takes none".to_string()
        } else {
            format!("this endpoint takes {takes}")
        };
        return invalid(name, format!("unknown query parameter {name:?}; {takes}"));
    }
    let path = p.path().to_string();
    if path.is_empty() || path == "." {
        return invalid("query", format!("invalid query: {msg}"));
    }
    // serde_html_form groups a repeated key into a list, which a
    // single-valued parameter refuses with this message.
    if msg == "unsupported value" {
        return invalid(&path, format!("{path} may be given only once"));
    }
    invalid(&path, format!("{path}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::FromRequestParts;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        #[serde(default, deserialize_with = "once")]
        limit: Option<String>,
        #[serde(default)]
        label: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct None_ {}

    async fn parse<T: serde::de::DeserializeOwned>(uri: &str) -> Result<T, ApiError> {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri(uri)
            .body(())
            .expect("request")
            .into_parts();
        parsed(Query::<T>::from_request_parts(&mut parts, &()).await)
    }

    #[tokio::test]
    async fn unknown_repeated_and_empty_parameters() {
        let q: Q = parse("/v1/runs?label=a&label=b%3Dc&limit=")
            .await
            .expect("ok");
        assert_eq!(q.limit.as_deref(), Some(""));
        assert_eq!(q.label, ["a", "b=c"]);
        let q: Q = parse("/v1/runs").await.expect("ok");
        assert!(q.limit.is_none() && q.label.is_empty());

        let e = parse::<Q>("/v1/runs?x=1").await.expect_err("unknown");
        assert_eq!(e.field.as_deref(), Some("x"));
        assert_eq!(
            e.message,
            "unknown query parameter \"x\"; this endpoint takes limit or label"
        );
        let e = parse::<Q>("/v1/runs?limit=1&limit=2")
            .await
            .expect_err("twice");
        assert_eq!(e.field.as_deref(), Some("limit"));
        assert_eq!(e.message, "limit may be given only once");
        let e = parse::<None_>("/v1/runs/r/artifacts?host=h")
            .await
            .expect_err("none");
        assert_eq!(e.field.as_deref(), Some("host"));
        assert!(
            e.message.ends_with("this endpoint takes none"),
            "{}",
            e.message
        );
    }
}
