//! The plugin contract versions the host loads, and the one place that
//! tells them apart.
//!
//! * [`latest`] (0.3.0) is the host's own model: [`Outcome`], [`Retry`],
//!   [`Level`] and the types of an [`EventView`] are its generated types, so
//!   the dispatcher and the capabilities speak the newest contract;
//! * an older version ([`v0_2`], [`v0_1`]) holds its bindings and converts
//!   its values UP to the model (its outcome, its log level), and the model
//!   DOWN where it reads the model's values (0.2.0's `event` fields) or its
//!   export takes one of its own records (0.1.0's `handle` takes the whole
//!   event record);
//! * [`SinkPre`] and [`Sink`] are the one enum over versions; the `match` on
//!   the version is written here and nowhere else.
//!
//! Adding a contract version: its WIT under `wit/`, a module beside these
//! with its bindings and its conversions, one variant in [`SinkPre`] and
//! [`Sink`] (the compiler then names every arm to write, all in this file),
//! and one line in [`add_to_linker`] and [`CONTRACTS`]. The capabilities
//! (`crate::capability`) each implement the new version's `Host` trait.

pub mod event;
pub mod v0_1;
pub mod v0_2;
pub mod v0_3;

/// The newest contract version: the host's model types are its types.
pub use v0_3 as latest;

pub use event::{EventError, EventView};
pub use latest::bindings::herald::plugin::log::Level;
pub use latest::bindings::herald::plugin::types::{
    EventKind, HostStats, Outcome, Play, Retry, Run, Stats, Status, Task, Timing,
};

use crate::{HostState, LoadError};
use std::sync::Arc;
use wasmtime::component::{InstancePre, Linker, Resource};
use wasmtime::Store;

/// The `herald:plugin/handler` versions this host loads, newest first.
pub const CONTRACTS: [&str; 3] = [v0_3::CONTRACT, v0_2::CONTRACT, v0_1::CONTRACT];

/// Links the contract's own types (the `event` resource of 0.2.0 and
/// 0.3.0); the capabilities are linked by [`crate::capability::add_to_linker`].
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_2::add_to_linker(linker)?;
    v0_3::add_to_linker(linker)
}

/// Maps every event kind of one enum to the same-named kind of another:
/// the one list of kind names in the runtime (herald-event's kind, each
/// contract version's `event-kind`).
macro_rules! map_event_kind {
    ($value:expr, $from:ty => $to:ty) => {
        $crate::contract::map_event_kind!(@map $value, $from => $to;
            PlaybookOnStart, PlaybookOnPlayStart, PlaybookOnTaskStart, PlaybookOnHandlerTaskStart,
            PlaybookOnCleanupTaskStart, PlaybookOnNoHostsMatched, PlaybookOnNoHostsRemaining,
            PlaybookOnInclude, PlaybookOnNotify, PlaybookOnVarsPrompt, PlaybookOnImportForHost,
            PlaybookOnNotImportForHost, PlaybookOnSetup, PlaybookOnStats, RunnerOnStart, RunnerOnOk,
            RunnerOnFailed, RunnerOnSkipped, RunnerOnUnreachable, RunnerOnNoHosts, RunnerOnAsyncPoll,
            RunnerOnAsyncOk, RunnerOnAsyncFailed, RunnerItemOnOk, RunnerItemOnFailed,
            RunnerItemOnSkipped, RunnerRetry, RunnerOnFileDiff, Verbose, Debug, Warning, Deprecated,
            Error, SystemWarning)
    };
    (@map $value:expr, $from:ty => $to:ty; $($v:ident),* $(,)?) => {
        match $value { $(<$from>::$v => <$to>::$v),* }
    };
}
pub(crate) use map_event_kind;

/// A component linked for the contract version it exports.
pub(crate) enum SinkPre {
    V0_1(v0_1::bindings::SinkPre<HostState>),
    V0_2(v0_2::bindings::SinkPre<HostState>),
    V0_3(v0_3::bindings::SinkPre<HostState>),
}

/// A live instance, of its component's contract version.
pub(crate) enum Sink {
    V0_1(v0_1::bindings::Sink),
    V0_2(v0_2::bindings::Sink),
    V0_3(v0_3::bindings::Sink),
}

/// An event converted once into the shape one contract version takes
/// (raw-call benchmarks): 0.1.0's whole record, or the journaled text that
/// 0.2.0 and 0.3.0 lend.
pub struct Prepared(PreparedShape);

enum PreparedShape {
    V0_1(Box<v0_1::Event>),
    V0_2(String),
}

/// What a call is given: the journaled text, or an event already prepared.
pub(crate) enum Input<'a> {
    Journaled(&'a str),
    Prepared(&'a Prepared),
}

/// The answer for an event the host cannot read: it never will.
pub(crate) fn unreadable(reason: &EventError) -> Outcome {
    Outcome::Permanent(format!("event cannot be given to plugins: {reason}"))
}

/// A contract version the host loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V0_1,
    V0_2,
    V0_3,
}

impl Version {
    /// The newest version a component implements, from its export names;
    /// checked before linking, so that a component of no known version is
    /// told so rather than told about an import.
    pub(crate) fn of(exports: &[String]) -> Result<Version, LoadError> {
        let exports_one = |prefix: &str| exports.iter().any(|n| n.starts_with(prefix));
        if exports_one(v0_3::EXPORT_PREFIX) {
            Ok(Version::V0_3)
        } else if exports_one(v0_2::EXPORT_PREFIX) {
            Ok(Version::V0_2)
        } else if exports_one(v0_1::EXPORT_PREFIX) {
            Ok(Version::V0_1)
        } else {
            Err(LoadError::Link(no_contract(exports)))
        }
    }
}

impl SinkPre {
    /// Wraps a linked component for the version it implements.
    pub(crate) fn new(version: Version, pre: InstancePre<HostState>) -> Result<SinkPre, LoadError> {
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        Ok(match version {
            Version::V0_1 => SinkPre::V0_1(v0_1::bindings::SinkPre::new(pre).map_err(link)?),
            Version::V0_2 => SinkPre::V0_2(v0_2::bindings::SinkPre::new(pre).map_err(link)?),
            Version::V0_3 => SinkPre::V0_3(v0_3::bindings::SinkPre::new(pre).map_err(link)?),
        })
    }

    /// The `herald:plugin/handler` version of the component.
    pub(crate) fn contract(&self) -> &'static str {
        match self {
            SinkPre::V0_1(_) => v0_1::CONTRACT,
            SinkPre::V0_2(_) => v0_2::CONTRACT,
            SinkPre::V0_3(_) => v0_3::CONTRACT,
        }
    }

    /// Instantiates the component in `store`.
    pub(crate) async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Sink> {
        match self {
            SinkPre::V0_1(pre) => pre.instantiate_async(store).await.map(Sink::V0_1),
            SinkPre::V0_2(pre) => pre.instantiate_async(store).await.map(Sink::V0_2),
            SinkPre::V0_3(pre) => pre.instantiate_async(store).await.map(Sink::V0_3),
        }
    }

    /// Converts a journaled event once into the shape this version takes.
    pub(crate) fn prepare(&self, tenant: &str, body: &str) -> Result<Prepared, EventError> {
        Ok(Prepared(match self {
            SinkPre::V0_1(_) => PreparedShape::V0_1(Box::new(v0_1::event(tenant, body)?)),
            SinkPre::V0_2(_) | SinkPre::V0_3(_) => PreparedShape::V0_2(body.to_owned()),
        }))
    }
}

/// The error of a component that exports no contract version the host loads.
fn no_contract(exports: &[String]) -> String {
    let found = exports
        .iter()
        .filter(|n| n.starts_with("herald:plugin/"))
        .cloned()
        .collect::<Vec<_>>();
    let detail = if found.is_empty() {
        format!(
            "it exports {}",
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        )
    } else {
        format!(
            "it exports {}, a contract version this host does not implement",
            found.join(", ")
        )
    };
    format!(
        "it does not export {} ({detail}); build it against wit/v0.3.0",
        CONTRACTS.join(" or ")
    )
}

impl Sink {
    /// Calls `configure` with the instance's config (JSON text).
    pub(crate) async fn configure(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Sink::V0_1(s) => {
                s.herald_plugin_handler()
                    .call_configure(store, config)
                    .await
            }
            Sink::V0_2(s) => {
                s.herald_plugin_handler()
                    .call_configure(store, config)
                    .await
            }
            Sink::V0_3(s) => {
                s.herald_plugin_handler()
                    .call_configure(store, config)
                    .await
            }
        }
    }

    /// Calls `handle` with one event in the shape the version takes: a 0.2.0
    /// plugin borrows it as a lazily read `event` resource, a 0.1.0 plugin
    /// gets the whole record, converted here. An event the host cannot read
    /// is answered with a permanent failure (for 0.2.0, when a field read
    /// found it unreadable), never a trap.
    pub(crate) async fn handle(
        &self,
        store: &mut Store<HostState>,
        tenant: &Arc<str>,
        input: Input<'_>,
        attempt: u32,
    ) -> wasmtime::Result<Outcome> {
        match self {
            Sink::V0_1(s) => {
                let body = match input {
                    Input::Prepared(Prepared(PreparedShape::V0_1(event))) => Err(&**event),
                    Input::Prepared(Prepared(PreparedShape::V0_2(body))) => Ok(body.as_str()),
                    Input::Journaled(body) => Ok(body),
                };
                // 0.1.0 takes the whole record, converted here (its adapter).
                let converted;
                let event = match body {
                    Err(prepared) => prepared,
                    Ok(body) => match v0_1::event(tenant, body) {
                        Ok(event) => {
                            converted = event;
                            &converted
                        }
                        Err(e) => return Ok(unreadable(&e)),
                    },
                };
                let outcome = s
                    .herald_plugin_handler()
                    .call_handle(store, event, attempt)
                    .await?;
                Ok(outcome.into())
            }
            Sink::V0_2(s) => {
                let owned = lend(store, tenant, input)?;
                let lent = Resource::new_borrow(owned.rep());
                let answer = s
                    .herald_plugin_handler()
                    .call_handle(&mut *store, lent, attempt)
                    .await
                    .map(Outcome::from);
                take_back(store, owned, answer)
            }
            Sink::V0_3(s) => {
                let owned = lend(store, tenant, input)?;
                let lent = Resource::new_borrow(owned.rep());
                let answer = s
                    .herald_plugin_handler()
                    .call_handle(&mut *store, lent, attempt)
                    .await;
                let outcome = take_back(store, owned, answer)?;
                // A template that failed during the call decides the answer:
                // it is fixed in the configuration, never by a retry.
                Ok(match store.data_mut().templates.take_failure() {
                    Some(message) => Outcome::Permanent(message),
                    None => outcome,
                })
            }
        }
    }
}

/// Puts the event in the store's table, for one `handle` call to borrow as
/// the lazily read `event` resource (0.2.0 and 0.3.0).
fn lend(
    store: &mut Store<HostState>,
    tenant: &Arc<str>,
    input: Input<'_>,
) -> wasmtime::Result<Resource<v0_3::LazyEvent>> {
    let body = match input {
        Input::Journaled(body) => body.to_owned(),
        Input::Prepared(Prepared(PreparedShape::V0_2(body))) => body.clone(),
        Input::Prepared(Prepared(PreparedShape::V0_1(event))) => event.json.clone(),
    };
    store
        .data_mut()
        .table
        .push(v0_3::LazyEvent::new(tenant.clone(), body))
        .map_err(|e| wasmtime::format_err!("cannot lend the event: {e}"))
}

/// Removes the lent event after the call; an event a field read found
/// unreadable answers a permanent failure, whatever the plugin said.
fn take_back(
    store: &mut Store<HostState>,
    owned: Resource<v0_3::LazyEvent>,
    answer: wasmtime::Result<Outcome>,
) -> wasmtime::Result<Outcome> {
    let unread = store
        .data_mut()
        .table
        .delete(owned)
        .ok()
        .and_then(|lazy| lazy.unreadable().cloned());
    let outcome = answer?;
    Ok(match unread {
        Some(e) => unreadable(&e),
        None => outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_newest_version_a_component_exports_is_chosen() {
        let both = names(&["herald:plugin/handler@0.1.0", "herald:plugin/handler@0.2.1"]);
        assert_eq!(Version::of(&both).ok(), Some(Version::V0_2));
        let newest = names(&["herald:plugin/handler@0.3.0"]);
        assert_eq!(Version::of(&newest).ok(), Some(Version::V0_3));
        let old = names(&["herald:plugin/handler@0.1.3"]);
        assert_eq!(Version::of(&old).ok(), Some(Version::V0_1));
    }

    #[test]
    fn an_unknown_version_is_named_in_the_error() {
        let e = Version::of(&names(&["herald:plugin/handler@9.0.0"])).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains(
                "herald:plugin/handler@9.0.0, a contract version this host does not implement"
            ),
            "{m}"
        );
        assert!(
            m.contains("herald:plugin/handler@0.3.0 or herald:plugin/handler@0.2.0 or herald:plugin/handler@0.1.0"),
            "{m}"
        );
        let m = Version::of(&[]).unwrap_err().to_string();
        assert!(m.contains("it exports nothing"), "{m}");
    }

    #[test]
    fn an_unreadable_event_is_a_permanent_failure() {
        let e = event::parse("{not json").unwrap_err();
        assert!(
            matches!(unreadable(&e), Outcome::Permanent(m) if m.starts_with("event cannot be given to plugins: journaled event is not JSON"))
        );
        let e = event::parse(r#"{"event": "nope"}"#).unwrap_err();
        assert_eq!(e.to_string(), r#"unknown event kind "nope""#);
    }
}
