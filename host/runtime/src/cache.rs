//! The on-disk cache of compiled components, under `<storage.data_dir>/cache/`.
//!
//! An entry is `<component sha256>-<engine key>.cwasm`, where the engine key
//! hashes wasmtime's `precompile_compatibility_hash` (wasmtime version,
//! compiler and target settings, features, tunables such as epoch
//! interruption), Herald's own engine settings and a cache format version, so
//! an entry is only ever loaded by an engine that can run it. Next to it,
//! `<same>.sha256` holds the sha256 of the `.cwasm` bytes: deserializing
//! trusts the file completely (`Component::deserialize` is `unsafe`), so a
//! truncated or altered entry is detected before it is loaded and rebuilt.
//! Entries are written to a temporary file and renamed into place, and are
//! mapped (`Component::deserialize_file`) rather than copied, so their code
//! pages are file-backed and shared.

use sha2::Digest;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Bump when the entry layout changes.
const FORMAT: &str = "herald-cwasm-1";

/// Where compiled components are kept.
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// A cache in `dir` for `engine`; `settings` names Herald's engine settings.
    pub fn new(dir: PathBuf, engine: &Engine, settings: &str) -> CompileCache {
        // SipHash with fixed keys: stable across runs of the same build.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        settings.hash(&mut h);
        FORMAT.hash(&mut h);
        CompileCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for `bytes` (whose sha256 is `sha256`): from the
    /// cache when a valid entry exists, else compiled and stored.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
        source: &Path,
    ) -> wasmtime::Result<Component> {
        let entry = self.entry(sha256);
        let digest_path = entry.with_extension("sha256");
        if entry.exists() {
            match self.read_entry(engine, &entry, &digest_path) {
                Ok(c) => {
                    herald_telemetry::host()
                        .compile_cache
                        .with_label_values(&["hit"])
                        .inc();
                    tracing::debug!(component = %source.display(), entry = %entry.display(), "compiled component loaded from the cache");
                    return Ok(c);
                }
                Err(e) => {
                    herald_telemetry::host()
                        .compile_cache
                        .with_label_values(&["corrupt"])
                        .inc();
                    tracing::warn!(component = %source.display(), entry = %entry.display(),
                        "compile cache entry unusable, rebuilding it: {e}");
                    let _ = std::fs::remove_file(&entry);
                    let _ = std::fs::remove_file(&digest_path);
                }
            }
        } else {
            herald_telemetry::host()
                .compile_cache
                .with_label_values(&["miss"])
                .inc();
        }
        let started = Instant::now();
        let compiled = engine.precompile_component(bytes)?;
        tracing::info!(component = %source.display(), ms = started.elapsed().as_millis() as u64,
            "component compiled");
        match self.write_entry(&entry, &digest_path, &compiled) {
            // Map the entry just written, so the code is file-backed.
            // SAFETY: this cache wrote the file just now (renamed into place
            // from a private temporary file) from this engine's output.
            Ok(()) => match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), "cannot map the compile cache entry just written: {e}")
                }
            },
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot write the compile cache (plugins are compiled at every start): {e}")
            }
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
    }

    fn read_entry(
        &self,
        engine: &Engine,
        entry: &Path,
        digest_path: &Path,
    ) -> wasmtime::Result<Component> {
        let compiled = std::fs::read(entry)?;
        let expected = std::fs::read_to_string(digest_path)
            .map_err(|e| wasmtime::format_err!("no checksum file: {e}"))?;
        let actual = hex::encode(sha2::Sha256::digest(&compiled));
        if expected.trim() != actual {
            wasmtime::bail!("checksum mismatch (the file was truncated or altered)");
        }
        drop(compiled);
        // SAFETY: `deserialize_file` maps the file and trusts its contents.
        // Only entries this cache wrote are mapped: the name carries the
        // engine key, the checksum the host recorded next to it matches,
        // and wasmtime checks its own engine-compatibility header again.
        // Entries are replaced by rename, never rewritten in place, so a
        // mapping keeps the file it was made from.
        unsafe { Component::deserialize_file(engine, entry) }
    }

    fn write_entry(
        &self,
        entry: &Path,
        digest_path: &Path,
        compiled: &[u8],
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let digest = hex::encode(sha2::Sha256::digest(compiled));
        write_atomic(digest_path, digest.as_bytes())?;
        write_atomic(entry, compiled)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!(
        "tmp.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
