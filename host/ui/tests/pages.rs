//! The UI's pages over a real SQLite journal: signing in (with the CSRF
//! token the form needs), a run's failures, tenancy by URL, and a dead
//! letter retried only with the session's CSRF token.

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use herald_journal::{Journal, Mark, MarkBatch, MarkOutcome, SharedStore};
use herald_ui::{Host, PluginInfo, Principal, Ui};
use serde_json::json;
use std::sync::Arc;
use tower::ServiceExt;

struct FakeHost;

impl Host for FakeHost {
    fn principal(&self, token: &str) -> Option<Principal> {
        match token {
            "tok-a" => Some(Principal::Tenant("a".into())),
            "tok-b" => Some(Principal::Tenant("b".into())),
            "admin" => Some(Principal::Admin),
            _ => None,
        }
    }
    fn tenants(&self) -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
    fn plugins(&self) -> Vec<PluginInfo> {
        vec![PluginInfo {
            name: "hook".into(),
            tenant: "a".into(),
            contract: Some("0.3.0".into()),
            state: "running".into(),
            ..Default::default()
        }]
    }
    fn tls(&self) -> bool {
        false
    }
}

fn ev(
    uuid: &str,
    run: &str,
    counter: i64,
    event: &str,
    data: serde_json::Value,
) -> herald_event::WireEvent {
    herald_event::validate(json!({"uuid": uuid, "event": event, "counter": counter,
        "created": format!("2026-12-05T10:00:{:02}", counter), "run_id": run, "event_data": data}))
    .expect("a valid event")
}

fn journal() -> (SharedStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "herald-ui-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let j = Journal::open(&dir.join("journal.db")).expect("journal");
    (Arc::new(j), dir)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn seed(j: &SharedStore) {
    j.open_cursor("hook", "a", &[]).expect("cursor");
    let pb = json!({"playbook": "site.yml"});
    let task = |t: &str, host: Option<&str>, res: serde_json::Value| {
        let mut d = json!({"playbook": "site.yml", "play": "web", "task": t, "res": res});
        if let Some(h) = host {
            d["host"] = json!(h);
        }
        d
    };
    j.commit_batch(
        "a",
        &[
            ev("a-1", "run-alpha-1", 1, "playbook_on_start", pb.clone()),
            ev(
                "a-2",
                "run-alpha-1",
                2,
                "playbook_on_play_start",
                json!({"playbook": "site.yml", "play": "web"}),
            ),
            ev(
                "a-3",
                "run-alpha-1",
                3,
                "playbook_on_task_start",
                task("install nginx", None, json!({})),
            ),
            ev(
                "a-4",
                "run-alpha-1",
                4,
                "runner_on_ok",
                task("install nginx", Some("web1"), json!({"changed": true})),
            ),
            ev(
                "a-5",
                "run-alpha-1",
                5,
                "runner_on_failed",
                task(
                    "install nginx",
                    Some("web2"),
                    json!({"msg": "No package nginx-xyz"}),
                ),
            ),
            ev(
                "a-6",
                "run-alpha-1",
                6,
                "playbook_on_stats",
                json!({"playbook": "site.yml",
                "ok": {"web1": 1}, "changed": {"web1": 1}, "failures": {"web2": 1},
                "artifact_data": {"release": "42"}}),
            ),
        ],
    )
    .expect("commit a");
    j.commit_batch(
        "b",
        &[ev(
            "b-1",
            "run-beta-1",
            1,
            "playbook_on_start",
            json!({"playbook": "secret-b.yml"}),
        )],
    )
    .expect("commit b");
    // The failed result's delivery to `hook` is a dead letter.
    let pending = j.pending("hook", "a", 0, 100).expect("pending");
    let failed = pending
        .iter()
        .find(|p| p.body.contains("runner_on_failed"))
        .expect("the failed result is pending");
    j.record(
        "hook",
        &MarkBatch {
            state: None,
            fence: None,
            marks: vec![Mark {
                event_id: failed.event_id,
                queued: failed.queued,
                first_at_ms: failed.first_at_ms,
                attempts: 3,
                outcome: MarkOutcome::Dead {
                    error: "sink answered 500".into(),
                },
                read: None,
            }],
            advance: None,
            attempts: vec![herald_journal::AttemptRecord {
                event_id: failed.event_id,
                attempt: 3,
                at_ms: 1_000,
                duration_ms: 12,
                outcome: "dead".into(),
                message: Some("sink answered 500".into()),
                requests: vec![herald_journal::RequestRecord {
                    method: "POST".into(),
                    url: "http://127.0.0.1:9/hook".into(),
                    status: Some(500),
                    latency_ms: 7,
                    body: "{\"error\":\"database is down\"}".into(),
                    error: None,
                }],
            }],
        },
    )
    .expect("dead letter");
}

struct Client {
    app: axum::Router,
    cookie: Option<String>,
}

async fn body(r: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 4 << 20)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn cookie_of(r: &Response<Body>, name: &str) -> Option<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

fn hidden(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let start = html.find(&key).expect("hidden field") + key.len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

impl Client {
    async fn get(&self, uri: &str) -> Response<Body> {
        let mut req = Request::get(uri);
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c);
        }
        self.app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn post(&self, uri: &str, form: &str, cookie: Option<&str>) -> Response<Body> {
        let mut req =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie.or(self.cookie.as_deref()) {
            req = req.header(header::COOKIE, c);
        }
        self.app
            .clone()
            .oneshot(req.body(Body::from(form.to_string())).unwrap())
            .await
            .unwrap()
    }

    async fn sign_in(app: &axum::Router, token: &str, tenant: &str) -> Client {
        let mut c = Client {
            app: app.clone(),
            cookie: None,
        };
        let form = c.get("/login").await;
        let login_cookie = cookie_of(&form, "herald_login").expect("the form's cookie");
        let csrf = hidden(&body(form).await, "csrf");
        let r = c
            .post(
                "/login",
                &format!("token={token}&tenant={tenant}&csrf={csrf}&next=%2Fruns"),
                Some(&login_cookie),
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let session = cookie_of(&r, "herald_session").expect("a session cookie");
        let set = r
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>();
        assert!(
            set.iter().any(|v| v.starts_with("herald_session=")
                && v.contains("HttpOnly")
                && v.contains("SameSite=Lax")),
            "{set:?}"
        );
        c.cookie = Some(session);
        c
    }
}

fn app() -> (axum::Router, SharedStore, std::path::PathBuf) {
    let (j, dir) = journal();
    seed(&j);
    (
        herald_ui::router(Ui::new(j.clone(), Arc::new(FakeHost))),
        j,
        dir,
    )
}

#[tokio::test]
async fn signing_in_needs_a_known_token_and_the_form_token() {
    let (app, _j, dir) = app();
    let anon = Client {
        app: app.clone(),
        cookie: None,
    };
    let r = anon.get("/runs/run-alpha-1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[header::LOCATION],
        "/login?next=%2Fruns%2Frun-alpha-1"
    );
    // The sign-in form's own CSRF token: without the cookie it came with, refused.
    let form = anon.get("/login").await;
    let csrf = hidden(&body(form).await, "csrf");
    let r = anon
        .post("/login", &format!("token=tok-a&csrf={csrf}"), None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(cookie_of(&r, "herald_session").is_none());
    // An unknown token.
    let form = anon.get("/login").await;
    let lc = cookie_of(&form, "herald_login").unwrap();
    let csrf = hidden(&body(form).await, "csrf");
    let r = anon
        .post("/login", &format!("token=nope&csrf={csrf}"), Some(&lc))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(body(r).await.contains("Unknown token"));
    // Signed in, then out: the cookie no longer opens a page.
    let a = Client::sign_in(&app, "tok-a", "").await;
    let page = a.get("/runs").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = body(page).await;
    assert!(
        html.contains("site.yml") && html.contains("run-alpha-1"),
        "{html}"
    );
    assert!(
        !html.contains("secret-b.yml"),
        "tenant b's run on tenant a's list"
    );
    let csrf = hidden(&html, "csrf");
    assert_eq!(
        a.post("/logout", "", None).await.status(),
        StatusCode::FORBIDDEN,
        "no CSRF token"
    );
    assert_eq!(
        a.post("/logout", &format!("csrf={csrf}"), None)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(a.get("/runs").await.status(), StatusCode::SEE_OTHER);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_run_shows_its_failures_first_and_tenants_stay_apart() {
    let (app, _j, dir) = app();
    let a = Client::sign_in(&app, "tok-a", "").await;
    let html = body(a.get("/runs/run-alpha-1").await).await;
    let failures = html.find("id=\"failures\"").expect("a failures section");
    let recap = html.find("PLAY RECAP").expect("a recap");
    assert!(failures < recap, "failures come first");
    assert!(
        html[failures..recap].contains("web2")
            && html[failures..recap].contains("No package nginx-xyz")
    );
    assert!(!html[failures..recap].contains("web1"), "web1 did not fail");
    let stats = html
        .find("<h2>set_stats</h2>")
        .expect("a set_stats section");
    assert!(
        html[stats..].contains("release") && html[stats..].contains("42"),
        "set_stats shown"
    );
    assert!(html.contains("install nginx"), "the timeline's task");
    // `latest` and a prefix find the run.
    let r = a.get("/runs/latest").await;
    assert_eq!(r.headers()[header::LOCATION], "/runs/run-alpha-1");
    let r = a.get("/runs/run-al").await;
    assert_eq!(r.headers()[header::LOCATION], "/runs/run-alpha-1");
    // The event page, the host page, the search.
    let ev = body(a.get("/events/a-5").await).await;
    assert!(ev.contains("No package nginx-xyz") && ev.contains("runner_on_failed"));
    let host = body(a.get("/hosts/web2").await).await;
    assert!(host.contains("run-alpha-1"));
    let found = body(a.get("/search?q=NGINX").await).await;
    assert!(
        found.contains("install nginx") && found.contains("web"),
        "{found}"
    );
    // Tenant b reaches none of it by URL.
    let b = Client::sign_in(&app, "tok-b", "").await;
    for uri in ["/runs/run-alpha-1", "/events/a-5", "/hosts/web2"] {
        assert_eq!(b.get(uri).await.status(), StatusCode::NOT_FOUND, "{uri}");
    }
    assert!(!body(b.get("/search?q=nginx").await)
        .await
        .contains("install nginx"));
    assert!(!body(b.get("/dead-letters").await)
        .await
        .contains("sink answered 500"));
    // An admin picks the tenant it looks at.
    let adm = Client::sign_in(&app, "admin", "b").await;
    assert!(body(adm.get("/runs").await).await.contains("secret-b.yml"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn dead_letters_are_retried_with_the_session_token_only() {
    let (app, j, dir) = app();
    let a = Client::sign_in(&app, "tok-a", "").await;
    let html = body(a.get("/dead-letters").await).await;
    assert!(html.contains("sink answered 500"), "{html}");
    let csrf = hidden(&html, "csrf");
    let event_id = hidden(&html, "event_id");
    // What was sent and what the sink answered.
    let attempts = body(a.get("/deliveries/hook/a-5").await).await;
    assert!(
        attempts.contains("POST http://127.0.0.1:9/hook") && attempts.contains("500"),
        "{attempts}"
    );
    assert!(
        attempts.contains("database is down") && attempts.contains("sink answered 500"),
        "{attempts}"
    );
    let r = a
        .post(
            "/dead-letters/retry",
            &format!("plugin=hook&event_id={event_id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = a
        .post(
            "/dead-letters/retry",
            &format!("plugin=hook&event_id={event_id}&csrf=0000"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        j.dead_letters("a", None, 10, None).unwrap().len(),
        1,
        "still dead"
    );
    // Tenant b cannot act on tenant a's instance, even with its own token.
    let b = Client::sign_in(&app, "tok-b", "").await;
    let bcsrf = hidden(&body(b.get("/runs").await).await, "csrf");
    assert_eq!(
        b.get("/deliveries/hook/a-5").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = b
        .post(
            "/dead-letters/retry",
            &format!("plugin=hook&event_id={event_id}&csrf={bcsrf}"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = a
        .post(
            "/dead-letters/retry",
            &format!("plugin=hook&event_id={event_id}&csrf={csrf}"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        j.dead_letters("a", None, 10, None).unwrap().is_empty(),
        "requeued"
    );
    let notice = body(a.get(r.headers()[header::LOCATION].to_str().unwrap()).await).await;
    assert!(
        notice.contains("1 dead letter(s) of hook queued again"),
        "{notice}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
