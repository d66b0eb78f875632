//! What a worker needs of a plugin instance.

use herald_runtime::{CallReport, PendingState, PluginInstance};
use std::future::Future;

/// What a worker needs of a plugin instance: its name, tenant and one call.
/// The runtime's [`PluginInstance`] is the one that runs; the worker loop's
/// tests script their own.
pub trait Plugin: Send + 'static {
    /// The instance's name (`[plugins.NAME]`).
    fn name(&self) -> &str;
    /// The tenant the instance serves.
    fn tenant(&self) -> &str;
    /// Another instance of the same plugin, for another of its shards.
    fn sibling(&self) -> Self
    where
        Self: Sized;
    /// Hands the plugin one stored event (its journal JSON); `attempt` counts from 1.
    fn deliver<'a>(
        &'a mut self,
        body: &'a str,
        attempt: u32,
    ) -> impl Future<Output = CallReport> + Send + 'a;
    /// Names the delivery the next calls are for, so that what the instance
    /// logs during them carries its ids (see [`herald_telemetry::DeliveryLog`]).
    fn set_delivery_log(&mut self, _log: herald_telemetry::DeliveryLog) {}
    /// Where the instance's `state` writes wait for its worker to hand them
    /// to the journal's writer with the outcomes; `None`: it keeps none.
    fn pending_state(&self) -> Option<PendingState> {
        None
    }
}

impl Plugin for PluginInstance {
    fn name(&self) -> &str {
        &self.spec().name
    }

    fn tenant(&self) -> &str {
        &self.spec().tenant
    }

    fn sibling(&self) -> Self {
        PluginInstance::sibling(self)
    }

    fn deliver<'a>(
        &'a mut self,
        body: &'a str,
        attempt: u32,
    ) -> impl Future<Output = CallReport> + Send + 'a {
        PluginInstance::deliver(self, body, attempt)
    }

    fn set_delivery_log(&mut self, log: herald_telemetry::DeliveryLog) {
        PluginInstance::set_delivery_log(self, log)
    }

    fn pending_state(&self) -> Option<PendingState> {
        Some(PluginInstance::pending_state(self).clone())
    }
}
