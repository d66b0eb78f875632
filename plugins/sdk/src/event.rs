//! The event a plugin is given.
//!
//! The contract (0.2.0 on) lends each event as a resource whose fields the plugin
//! reads on demand. [`EventRef`] wraps it: its field access (`event.host`,
//! through `Deref`) reads every field once, on first use, into an [`Event`];
//! [`EventRef::json`], [`EventRef::id`] and [`EventRef::kind`] read only what
//! they name, for a plugin that needs little (a forwarder sends `json` as it
//! is). Native unit tests build an [`Event`] and wrap it with
//! [`EventRef::from`].

use crate::bindings::herald::plugin::types as wit;
use crate::{EventKind, Play, Run, Stats, Status, Task, Timing};
use std::cell::OnceCell;
use std::ops::Deref;

/// The event `handle` is lent by the host (the generated binding's type).
pub type LentEvent<'a> = &'a wit::Event;

/// Every field of one event, as the host journaled it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event's uuid: stable across retries, a good idempotency key.
    pub id: String,
    /// The uuid of the event this one belongs under.
    pub parent_id: Option<String>,
    pub kind: EventKind,
    /// The tenant that sent the event.
    pub tenant: String,
    pub run: Run,
    /// Position within the run (ansible-runner's `counter`).
    pub sequence: u64,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub play: Option<Play>,
    pub task: Option<Task>,
    pub host: Option<String>,
    pub status: Option<Status>,
    pub changed: bool,
    pub ignore_errors: bool,
    pub timing: Option<Timing>,
    /// The module's result, a JSON object (redacted by the callback).
    pub res: Option<String>,
    pub stats: Option<Stats>,
    /// The whole event in Herald's wire format, a JSON object.
    pub json: String,
}

/// One event during one `handle` call: lent by the host, or built by a test.
pub struct EventRef<'a>(Source<'a>);

enum Source<'a> {
    Lent {
        event: LentEvent<'a>,
        whole: OnceCell<Event>,
    },
    Built(Event),
}

impl<'a> EventRef<'a> {
    /// Wraps the event the host lent to `handle`.
    pub fn lent(event: LentEvent<'a>) -> EventRef<'a> {
        EventRef(Source::Lent {
            event,
            whole: OnceCell::new(),
        })
    }

    /// The whole event, read from the host on first use.
    pub fn whole(&self) -> &Event {
        match &self.0 {
            Source::Lent { event, whole } => whole.get_or_init(|| read_all(event)),
            Source::Built(e) => e,
        }
    }

    /// Reads one field: from the whole event when it was read, else only that field.
    fn one<T>(&self, field: impl FnOnce(&Event) -> T, read: impl FnOnce(&wit::Event) -> T) -> T {
        match &self.0 {
            Source::Lent { event, whole } => match whole.get() {
                Some(e) => field(e),
                None => read(event),
            },
            Source::Built(e) => field(e),
        }
    }

    /// The event in Herald's wire format, without reading the other fields.
    pub fn json(&self) -> String {
        self.one(|e| e.json.clone(), wit::Event::json)
    }

    /// The event's uuid, without reading the other fields.
    pub fn id(&self) -> String {
        self.one(|e| e.id.clone(), wit::Event::id)
    }

    /// The event's kind, without reading the other fields.
    pub fn kind(&self) -> EventKind {
        self.one(|e| e.kind, wit::Event::kind)
    }

    /// Renders message template `name` (the user's, else the plugin's default) against this
    /// event and its run: `Ok(Some(text))`, `Ok(None)` when neither has that name (and always
    /// for an event built by a native test), `Err(message)` when the template failed. After a
    /// failure the host answers the event with a permanent failure carrying the message,
    /// whatever `handle` returns; returning [`crate::permanent`] with it says the same.
    pub fn render(&self, name: &str) -> Result<Option<String>, String> {
        match &self.0 {
            Source::Lent { event, .. } => crate::templates::render(name, event),
            Source::Built(_) => Ok(None),
        }
    }
}

impl From<Event> for EventRef<'static> {
    fn from(event: Event) -> EventRef<'static> {
        EventRef(Source::Built(event))
    }
}

impl Deref for EventRef<'_> {
    type Target = Event;

    fn deref(&self) -> &Event {
        self.whole()
    }
}

fn read_all(e: &wit::Event) -> Event {
    Event {
        id: e.id(),
        parent_id: e.parent_id(),
        kind: e.kind(),
        tenant: e.tenant(),
        run: e.run(),
        sequence: e.sequence(),
        created_ms: e.created_ms(),
        play: e.play(),
        task: e.task(),
        host: e.host(),
        status: e.status(),
        changed: e.changed(),
        ignore_errors: e.ignore_errors(),
        timing: e.timing(),
        res: e.res(),
        stats: e.stats(),
        json: e.json(),
    }
}
