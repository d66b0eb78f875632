//! The `metrics` capability: series a plugin defines itself, exported on
//! the host's `/metrics` with `tenant` and `plugin` labels.

/// Kind of a plugin-defined series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    Counter,
    Gauge,
    Histogram,
}

/// Why a plugin's sample was refused (a bad name, a reserved prefix, the
/// per-plugin series cap); logged as a warning, the call goes on.
pub type SeriesError = Box<dyn std::error::Error + Send + Sync>;

/// Where plugin-defined samples go: the host's metric registry implements
/// it; the runtime only sees this trait.
pub trait PluginSeries: Send + Sync {
    /// Records one sample. `tenant` and `plugin` labels are added by the
    /// sink and override any the plugin sent.
    #[allow(clippy::too_many_arguments)]
    fn plugin_sample(
        &self,
        tenant: &str,
        plugin: &str,
        kind: SeriesKind,
        name: &str,
        help: &str,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), SeriesError>;
}
