//! Routes: which events a plugin instance receives.
//!
//! An instance with no route receives every event of its tenant. With routes,
//! it receives an event when at least one route matches; within a route every
//! given field must match (fields left out match anything):
//!
//! ```toml
//! [[plugins.pager.routes]]
//! kinds = ["runner_on_failed", "runner_on_unreachable"]   # event kinds
//! status = ["failed", "unreachable"]                       # ok, changed, failed, unreachable, skipped
//! playbooks = ["deploy-*.yml"]                             # globs on the playbook (path or file name)
//! hosts = ["web*"]                                         # globs on the host
//! labels = { env = "prod" }                                # run labels sent by the callback
//! ```
//!
//! `status`, `hosts` only match events that have one (host results), so a
//! failure route does not receive the run's start or stats: give those their
//! own route (`kinds = ["playbook_on_stats"]`).

use crate::{EventKind, Status, WireEvent};
use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One route as written in the config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub status: Vec<Status>,
    #[serde(default)]
    pub playbooks: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    kinds: Vec<EventKind>,
    status: Vec<Status>,
    playbooks: Vec<GlobMatcher>,
    hosts: Vec<GlobMatcher>,
    labels: BTreeMap<String, String>,
}

/// One bad entry of a route: the route's number (from 1), the field and why.
pub type RouteError = (usize, &'static str, String);

/// The routes of one instance.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob {pattern:?}: {e}"))
}

impl Routes {
    /// Compiles routes; the error names the route (1-based), field and value.
    pub fn compile(configs: &[RouteConfig]) -> Result<Routes, Vec<RouteError>> {
        let mut routes = Vec::with_capacity(configs.len());
        // Every bad entry of every route is reported, not just the first.
        let mut errors = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let n = i + 1;
            let mut kinds = Vec::new();
            for k in &c.kinds {
                match EventKind::parse(k) {
                    Some(kind) => kinds.push(kind),
                    None => errors.push((
                        n,
                        "kinds",
                        format!("unknown event kind {k:?} (see docs/wire-format.md)"),
                    )),
                }
            }
            let mut globs = |field: &'static str, patterns: &[String]| {
                let mut out = Vec::new();
                for p in patterns {
                    match glob(p) {
                        Ok(g) => out.push(g),
                        Err(e) => errors.push((n, field, e)),
                    }
                }
                out
            };
            let playbooks = globs("playbooks", &c.playbooks);
            let hosts = globs("hosts", &c.hosts);
            routes.push(Route {
                kinds,
                status: c.status.clone(),
                playbooks,
                hosts,
                labels: c.labels.clone(),
            });
        }
        if errors.is_empty() {
            Ok(Routes { routes })
        } else {
            Err(errors)
        }
    }

    /// The routes kept as JSON with an instance's cursor (an unreadable
    /// copy means no route: every event).
    pub fn from_json(json: &str) -> Routes {
        serde_json::from_str::<Vec<RouteConfig>>(json)
            .ok()
            .and_then(|r| Routes::compile(&r).ok())
            .unwrap_or_default()
    }

    /// Whether the instance receives a stored event (its journaled body). A
    /// body that no longer parses is received: better delivered than lost.
    pub fn matches_stored(&self, body: &str) -> bool {
        self.is_empty() || crate::parse_stored(body).is_none_or(|e| self.matches(&e))
    }

    /// Whether there is no route (the instance receives every event).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Whether the instance receives `event`.
    #[inline]
    pub fn matches(&self, event: &WireEvent) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| r.matches(event))
    }
}

impl Route {
    fn matches(&self, event: &WireEvent) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&event.kind) {
            return false;
        }
        if !self.status.is_empty() && !event.status().is_some_and(|s| self.status.contains(&s)) {
            return false;
        }
        if !self.playbooks.is_empty() {
            let Some(pb) = event.playbook() else {
                return false;
            };
            let base = pb.rsplit('/').next().unwrap_or(pb);
            if !self
                .playbooks
                .iter()
                .any(|g| g.is_match(pb) || g.is_match(base))
            {
                return false;
            }
        }
        if !self.hosts.is_empty() {
            let Some(host) = event.host() else {
                return false;
            };
            if !self.hosts.iter().any(|g| g.is_match(host)) {
                return false;
            }
        }
        if !self.labels.is_empty()
            && !self
                .labels
                .iter()
                .all(|(k, v)| event.label(k) == Some(v.as_str()))
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(
        kind: &str,
        host: Option<&str>,
        changed: bool,
        playbook: &str,
        labels: serde_json::Value,
    ) -> WireEvent {
        let mut data = json!({"playbook": playbook, "res": {"changed": changed}});
        if let Some(h) = host {
            data["host"] = json!(h);
        }
        crate::validate(
            json!({"uuid": "u", "event": kind, "counter": 1, "run_id": "r",
            "created": "2026-01-01T00:00:00", "labels": labels, "event_data": data}),
        )
        .unwrap()
    }

    fn routes(toml_text: &str) -> Routes {
        #[derive(Deserialize)]
        struct T {
            routes: Vec<RouteConfig>,
        }
        let t: T = toml::from_str(toml_text).unwrap();
        Routes::compile(&t.routes).unwrap()
    }

    #[test]
    fn table_of_routes_and_events() {
        let failures = routes("[[routes]]\nstatus = [\"failed\", \"unreachable\"]\n[[routes]]\nkinds = [\"playbook_on_stats\"]\n");
        let web_prod = routes("[[routes]]\nhosts = [\"web*\"]\nplaybooks = [\"deploy-*.yml\"]\nlabels = { env = \"prod\" }\n");
        let changed = routes("[[routes]]\nkinds = [\"runner_on_ok\"]\nstatus = [\"changed\"]\n");
        let everything = Routes::default();
        let prod = json!({"env": "prod"});
        let dev = json!({"env": "dev"});
        let cases: Vec<(WireEvent, [bool; 4])> = vec![
            (
                event(
                    "runner_on_failed",
                    Some("web1"),
                    false,
                    "deploy-app.yml",
                    prod.clone(),
                ),
                [true, true, false, true],
            ),
            (
                event(
                    "runner_on_unreachable",
                    Some("db1"),
                    false,
                    "deploy-app.yml",
                    prod.clone(),
                ),
                [true, false, false, true],
            ),
            (
                event(
                    "runner_on_ok",
                    Some("web1"),
                    true,
                    "/srv/pb/deploy-app.yml",
                    prod.clone(),
                ),
                [false, true, true, true],
            ),
            (
                event(
                    "runner_on_ok",
                    Some("web1"),
                    false,
                    "deploy-app.yml",
                    dev.clone(),
                ),
                [false, false, false, true],
            ),
            (
                event(
                    "runner_on_ok",
                    Some("web2"),
                    false,
                    "site.yml",
                    prod.clone(),
                ),
                [false, false, false, true],
            ),
            (
                event(
                    "playbook_on_stats",
                    None,
                    false,
                    "deploy-app.yml",
                    prod.clone(),
                ),
                [true, false, false, true],
            ),
            (
                event(
                    "playbook_on_start",
                    None,
                    false,
                    "deploy-app.yml",
                    prod.clone(),
                ),
                [false, false, false, true],
            ),
        ];
        for (ev, expected) in cases {
            let got = [
                failures.matches(&ev),
                web_prod.matches(&ev),
                changed.matches(&ev),
                everything.matches(&ev),
            ];
            assert_eq!(got, expected, "{} {:?}", ev.kind.as_str(), ev.host());
        }
    }

    /// The journal keeps an instance's routes as JSON and matches them on
    /// stored bodies: both round trips keep the verdict.
    #[test]
    fn routes_kept_as_json_match_stored_events_alike() {
        let configs: Vec<RouteConfig> = vec![RouteConfig {
            kinds: vec!["runner_on_failed".into()],
            hosts: vec!["web*".into()],
            labels: [("env".to_string(), "prod".to_string())].into(),
            ..Default::default()
        }];
        let json = serde_json::to_string(&configs).expect("routes serialise");
        let back: Vec<RouteConfig> = serde_json::from_str(&json).expect("and read back");
        assert_eq!(back, configs);
        let compiled = Routes::compile(&back).expect("they compile");
        let prod = json!({"env": "prod"});
        for (ev, expected) in [
            (
                event(
                    "runner_on_failed",
                    Some("web1"),
                    false,
                    "site.yml",
                    prod.clone(),
                ),
                true,
            ),
            (
                event(
                    "runner_on_failed",
                    Some("db1"),
                    false,
                    "site.yml",
                    prod.clone(),
                ),
                false,
            ),
            (
                event("runner_on_ok", Some("web1"), false, "site.yml", prod),
                false,
            ),
        ] {
            let stored = crate::parse_stored(ev.body()).expect("a stored body parses");
            assert_eq!(compiled.matches(&stored), expected, "{}", ev.body());
            assert_eq!(compiled.matches(&ev), expected);
        }
        assert!(!compiled.is_empty());
        assert!(Routes::default().is_empty());
    }

    #[test]
    fn bad_routes_name_the_field() {
        let bad = vec![RouteConfig {
            kinds: vec!["runner_on_nope".into()],
            ..Default::default()
        }];
        assert_eq!(Routes::compile(&bad).unwrap_err()[0].1, "kinds");
        let bad = vec![
            RouteConfig::default(),
            RouteConfig {
                kinds: vec!["nope".into()],
                hosts: vec!["web[".into()],
                playbooks: vec!["a[".into()],
                ..Default::default()
            },
        ];
        let e = Routes::compile(&bad).unwrap_err();
        let got: Vec<_> = e.iter().map(|(n, f, _)| (*n, *f)).collect();
        assert_eq!(got, [(2, "kinds"), (2, "playbooks"), (2, "hosts")]);
    }
}
