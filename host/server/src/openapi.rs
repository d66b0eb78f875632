//! `GET /openapi.json`: the OpenAPI 3.1 document of the ingest and query
//! API, generated from the handlers' annotations and the answer types.

use crate::query::model::*;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald API",
        description = "Ingest of Ansible playbook events (ansible-runner job events plus Herald's envelope, docs/wire-format.md) and queries over the journalled runs, events, set_stats artifacts and plugin deliveries. Every call is scoped to the tenant of its bearer token.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::ingest::post_events,
        crate::query::list_runs,
        crate::query::get_run,
        crate::query::run_events,
        crate::query::run_artifacts,
        crate::query::list_deliveries,
        crate::query::delivery_attempts,
        crate::query::search,
        crate::recovery::list,
        crate::recovery::retry_one,
        crate::recovery::retry_all,
        crate::recovery::replay,
        crate::admin::health,
        crate::admin::ready,
        crate::admin::metrics_text,
        crate::admin::tenant_metrics,
        crate::admin::list_plugins,
        crate::admin::reload_status,
        serve,
    ),
    components(schemas(EventKindName, TimeParam, EventDoc, EventBatch)),
    modifiers(&BearerAuth),
    tags(
        (name = "ingest", description = "Sending events"),
        (name = "query", description = "Runs, events, artifacts and deliveries"),
        (name = "recovery", description = "Dead letters and replay"),
        (name = "admin", description = "Operators' endpoints: an admin token (`server.admin_tokens`)"),
        (name = "meta", description = "This document, liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some("A tenant token (`herald token new`)".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some("An admin token (`server.admin_tokens`)".into());
        components.add_security_scheme("admin", SecurityScheme::Http(admin));
    }
}

/// The document, built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        let mut doc = serde_json::to_value(&doc).unwrap_or_default();
        constrain(&mut doc);
        doc
    })
}

/// The largest integer in `counter` and the per-host stats.
const MAX_SAFE: u64 = herald_event::MAX_SAFE_INTEGER;

/// Says in the document what the handlers check beyond the parameters'
/// Rust types, so a client (or schemathesis) generating from the document
/// sends only what the server accepts, and what it refuses is invalid
/// there too: non-empty filters, the `label` and dead-letter id formats,
/// integers written as digits, the event's exact rules.
fn constrain(doc: &mut Value) {
    let nonempty = json!({"type": "string", "minLength": 1});
    let params: Vec<(&str, &str, &str, Value)> = vec![
        ("/v1/runs", "get", "playbook", nonempty.clone()),
        ("/v1/runs", "get", "controller", nonempty.clone()),
        ("/v1/runs", "get", "cursor", cursor()),
        (
            "/v1/runs",
            "get",
            "label",
            json!({"type": "array", "maxItems": crate::query::MAX_LABELS,
                   "items": {"type": "string", "pattern": "^[^=]+(=[\\s\\S]*)?$"}}),
        ),
        ("/v1/runs/{id}", "get", "id", nonempty.clone()),
        ("/v1/runs/{id}/events", "get", "id", nonempty.clone()),
        (
            "/v1/runs/{id}/events",
            "get",
            "kind",
            json!({"type": "string", "pattern": kinds_pattern()}),
        ),
        ("/v1/runs/{id}/events", "get", "host", nonempty.clone()),
        (
            "/v1/runs/{id}/events",
            "get",
            "status",
            json!({"type": "string", "enum": ["ok", "changed", "failed", "unreachable", "skipped"]}),
        ),
        ("/v1/runs/{id}/events", "get", "cursor", cursor()),
        ("/v1/runs/{id}/artifacts", "get", "id", nonempty.clone()),
        ("/v1/runs/{id}/replay", "post", "id", nonempty.clone()),
        ("/v1/deliveries", "get", "run", nonempty.clone()),
        ("/v1/deliveries", "get", "plugin", nonempty.clone()),
        ("/v1/deliveries", "get", "cursor", cursor()),
        ("/v1/dead-letters", "get", "plugin", nonempty.clone()),
        (
            "/v1/dead-letters",
            "get",
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
        (
            "/v1/dead-letters",
            "get",
            "cursor",
            json!({"type": "string", "pattern": "^[0-9]{1,18}$"}),
        ),
        (
            "/v1/dead-letters/{id}/retry",
            "post",
            "id",
            json!({"type": "string", "pattern": "^[0-9]{1,18}:[\\s\\S]+$"}),
        ),
        (
            "/v1/events",
            "post",
            "X-Herald-Dropped",
            json!({"type": "integer", "minimum": 0, "maximum": MAX_SAFE}),
        ),
    ];
    for (path, method, name, schema) in params {
        let pointer = format!("/paths/{}/{method}/parameters", path.replace('/', "~1"));
        let Some(list) = doc.pointer_mut(&pointer).and_then(Value::as_array_mut) else {
            continue;
        };
        if let Some(p) = list.iter_mut().find(|p| p["name"] == name) {
            p["schema"] = schema;
        }
    }
    // Query and header values are never null: `Option` only means optional.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for op in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in op.values_mut() {
                let Some(list) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                    continue;
                };
                for p in list {
                    if let Some(types) = p["schema"]["type"].as_array() {
                        let kept: Vec<Value> =
                            types.iter().filter(|t| *t != "null").cloned().collect();
                        p["schema"]["type"] = kept.into_iter().next().unwrap_or(Value::Null);
                    }
                }
            }
        }
    }
    // A JSON body is an array of events, or one event alone.
    if let Some(json_body) =
        doc.pointer_mut("/paths/~1v1~1events/post/requestBody/content/application~1json")
    {
        json_body["schema"] = json!({"oneOf": [
            {"$ref": "#/components/schemas/EventBatch"},
            {"$ref": "#/components/schemas/EventDoc"},
        ]});
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("EventDoc".into(), event_doc());
    }
}

/// A `next_cursor`: only values the server returned are valid.
fn cursor() -> Value {
    json!({"type": "string", "minLength": 2, "pattern": "^([0-9a-fA-F]{2})+$",
           "description": "`next_cursor` of the previous page (opaque: only a value the server returned is valid)"})
}

/// `kind`: event names, comma-separated (spaces around a name allowed).
fn kinds_pattern() -> String {
    let names: Vec<&str> = herald_event::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let one = format!(" *({}) *", names.join("|"));
    format!("^{one}(,{one})*$")
}

/// The schema of one event, as `event::validate` checks it.
fn event_doc() -> Value {
    let id = json!({"type": "string", "minLength": 1, "maxLength": 128});
    let text = json!({"type": ["string", "null"]});
    let time = json!({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]});
    let object = json!({"type": ["object", "null"]});
    let counts = json!({"type": ["object", "null"],
        "description": "Per host, a count (playbook_on_stats)",
        "additionalProperties": {"type": "integer", "minimum": 0, "maximum": MAX_SAFE}});
    let mut data = serde_json::Map::new();
    for key in herald_event::EVENT_DATA_STRINGS {
        data.insert(key.to_string(), text.clone());
    }
    for key in ["start", "end"] {
        data.insert(key.into(), time.clone());
    }
    for key in herald_event::EVENT_DATA_OBJECTS {
        data.insert(key.to_string(), object.clone());
    }
    for key in herald_event::STATS_MAPS {
        data.insert(key.to_string(), counts.clone());
    }
    data.insert("duration".into(), json!({"type": ["number", "null"]}));
    data.insert("ignore_errors".into(), json!({"type": ["boolean", "null"]}));
    json!({
        "type": "object",
        "description": "One event: an ansible-runner job event plus Herald's envelope (docs/wire-format.md). Unknown fields are kept.",
        "required": ["uuid", "event", "counter", "created"],
        "properties": {
            "uuid": {"type": "string", "minLength": 1, "maxLength": 128,
                     "description": "The event's id, the dedup key within a tenant"},
            "event": {"$ref": "#/components/schemas/EventKindName"},
            "counter": {"type": "integer", "minimum": 0, "maximum": MAX_SAFE,
                        "description": "The event's position in its run"},
            "created": {"type": "string", "format": "date-time",
                        "description": "Creation time, RFC 3339; an ISO 8601 time without an offset (as ansible-runner writes it) is accepted too and taken as UTC"},
            "run_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 128,
                       "description": "Herald's run id; an imported ansible-runner event may give `runner_ident` instead"},
            "runner_ident": {"description": "ansible-runner's run id, used as `run_id` when that is absent or null"},
            "parent_uuid": text,
            "controller": text,
            "stdout": text,
            "labels": {"type": ["object", "null"], "additionalProperties": {"type": "string"},
                       "description": "The run's labels, string values only"},
            "event_data": {"type": ["object", "null"], "properties": data,
                           "description": "`playbook`, `play`, `task`, `host`, `res`, per-host stats... (docs/wire-format.md)"},
        },
        "anyOf": [
            {"required": ["run_id"], "properties": {"run_id": id.clone()}},
            {"required": ["runner_ident"],
             "properties": {"runner_ident": id, "run_id": {"type": "null"}}},
        ],
    })
}

/// This OpenAPI document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn serve() -> impl IntoResponse {
    Json(document().clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn covers_ingest_and_query() {
        let doc = super::document();
        for path in [
            "/v1/events",
            "/v1/runs",
            "/v1/runs/{id}",
            "/v1/runs/{id}/events",
            "/v1/runs/{id}/artifacts",
            "/v1/deliveries",
            "/v1/dead-letters",
            "/v1/dead-letters/retry",
            "/v1/dead-letters/{id}/retry",
            "/v1/runs/{id}/replay",
            "/health",
            "/ready",
            "/metrics",
            "/v1/metrics",
            "/v1/plugins",
            "/v1/admin/reload",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
        assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
        assert!(doc["components"]["schemas"].get("EventKindName").is_some());
    }

    /// What the handlers refuse is invalid in the document too.
    #[test]
    fn schemas_constrain_what_the_server_constrains() {
        let doc = super::document();
        let param = |path: &str, method: &str, name: &str| {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == name))
                .map(|p| p["schema"].clone())
                .unwrap_or_else(|| panic!("{path} {name}"))
        };
        assert_eq!(param("/v1/runs/{id}/events", "get", "host")["minLength"], 1);
        assert_eq!(
            param("/v1/runs", "get", "label")["items"]["pattern"],
            "^[^=]+(=[\\s\\S]*)?$"
        );
        assert_eq!(param("/v1/runs", "get", "label")["maxItems"], 8);
        assert_eq!(param("/v1/runs", "get", "cursor")["minLength"], 2);
        assert_eq!(param("/v1/dead-letters", "get", "limit")["type"], "integer");
        assert_eq!(
            param("/v1/dead-letters/{id}/retry", "post", "id")["pattern"],
            "^[0-9]{1,18}:[\\s\\S]+$"
        );
        // No query or header parameter may be null.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    assert!(
                        !p["schema"]["type"].is_array(),
                        "{method} {path} {}",
                        p["name"]
                    );
                }
            }
        }
        let event = &doc["components"]["schemas"]["EventDoc"];
        assert_eq!(
            event["properties"]["counter"]["maximum"],
            9007199254740991_u64
        );
        let failures = &event["properties"]["event_data"]["properties"]["failures"];
        assert_eq!(failures["additionalProperties"]["type"], "integer");
        assert_eq!(failures["additionalProperties"]["minimum"], 0);
        let kinds = regex_lite(&param("/v1/runs/{id}/events", "get", "kind"));
        assert!(kinds.starts_with("^ *(playbook_on_start|"), "{kinds}");
    }

    fn regex_lite(schema: &serde_json::Value) -> String {
        schema["pattern"].as_str().unwrap_or_default().to_string()
    }
}
