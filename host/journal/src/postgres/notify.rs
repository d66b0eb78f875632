//! Wake-ups across replicas: after a group commits (never inside its
//! transaction: a NOTIFY there would serialise commits), one coalesced
//! `NOTIFY`; every replica LISTENs and turns what it hears into the same
//! [`CommitNotice`]s its own commits send. A lost notification costs at most
//! the workers' idle poll.

use super::PgError;
use crate::CommitNotice;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// The channel every replica listens on.
pub(super) const CHANNEL: &str = "herald_commits";

/// Most bytes of a NOTIFY payload (PostgreSQL's limit is 8000).
const PAYLOAD_MAX: usize = 7900;

/// The payload for what a commit made pending: `e:` and the tenants with new
/// events, or `r:` and the plugin instance with requeued deliveries. A list
/// too long for one payload becomes `e:*` (every tenant).
pub(super) fn payload(notices: &[CommitNotice]) -> Vec<String> {
    let mut tenants: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for n in notices {
        match n {
            CommitNotice::Events { tenant } => {
                if !tenants.contains(&&**tenant) {
                    tenants.push(tenant);
                }
            }
            CommitNotice::Requeued { plugin } => out.push(format!("r:{plugin}")),
            CommitNotice::All => out.push("e:*".to_string()),
        }
    }
    if !tenants.is_empty() {
        let joined = format!("e:{}", tenants.join("\n"));
        out.push(if joined.len() > PAYLOAD_MAX {
            "e:*".to_string()
        } else {
            joined
        });
    }
    out
}

/// Sends `notices` to every replica, after the commit that made them.
pub(super) async fn send(
    c: &deadpool_postgres::Object,
    notices: &[CommitNotice],
) -> Result<(), PgError> {
    for p in payload(notices) {
        c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &p])
            .await?;
    }
    Ok(())
}

/// What a payload asks to wake. `e:*` wakes every worker.
fn decode(payload: &str) -> Vec<CommitNotice> {
    if let Some(plugin) = payload.strip_prefix("r:") {
        return vec![CommitNotice::Requeued {
            plugin: Arc::from(plugin),
        }];
    }
    match payload.strip_prefix("e:") {
        Some("*") => vec![CommitNotice::All],
        Some(list) => list
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(|t| CommitNotice::Events {
                tenant: Arc::from(t),
            })
            .collect(),
        None => Vec::new(),
    }
}

/// Listens on [`CHANNEL`] for as long as the journal lives, reconnecting
/// after a failure, and re-sends what it hears on `commits`.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    tls: super::tls::MakeRustls,
    commits: tokio::sync::broadcast::Sender<CommitNotice>,
    pool: deadpool_postgres::Pool,
    streams: Arc<super::streams::Streams>,
) {
    loop {
        if let Err(e) = listen_once(&config, &tls, &commits, &pool, &streams).await {
            tracing::debug!("journal: the PostgreSQL listener stopped ({e}); reconnecting");
        }
        if commits.receiver_count() == 0 && pool.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &super::tls::MakeRustls,
    commits: &tokio::sync::broadcast::Sender<CommitNotice>,
    pool: &deadpool_postgres::Pool,
    streams: &super::streams::Streams,
) -> Result<(), PgError> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Whatever was committed while no one listened: wake everyone once,
    // and read every queue (a replay's notification may have been lost).
    streams.forget_all();
    let _ = commits.send(CommitNotice::All);
    while let Some(p) = rx.recv().await {
        for n in decode(&p) {
            if let CommitNotice::Requeued { plugin } = &n {
                streams.forget_instance(plugin);
            }
            let _ = commits.send(n);
        }
        if pool.is_closed() {
            break;
        }
    }
    driver.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_coalesce_tenants_and_fall_back_to_all() {
        let n = |t: &str| CommitNotice::Events {
            tenant: Arc::from(t),
        };
        assert_eq!(payload(&[n("a"), n("b"), n("a")]), ["e:a\nb"]);
        let many: Vec<CommitNotice> = (0..2000).map(|i| n(&format!("tenant-{i}"))).collect();
        assert_eq!(payload(&many), ["e:*"]);
        assert_eq!(decode("e:a\nb"), [n("a"), n("b")]);
        assert_eq!(decode("e:*"), [CommitNotice::All]);
        assert_eq!(
            decode("r:hook"),
            [CommitNotice::Requeued {
                plugin: Arc::from("hook")
            }]
        );
    }
}
