//! Request parameters the areas share: ids in paths, digits in query
//! strings, and the 400 that names the parameter.

use crate::error::ApiError;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;

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
