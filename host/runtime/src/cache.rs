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
//!
//! `herald serve` prunes the cache once its plugins are loaded
//! ([`CompileCache::prune`]): an upgrade or a replaced plugin would otherwise
//! leave every entry it made behind, some MiB each, for as long as the data
//! directory lives.

use sha2::Digest;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Bump when the entry layout changes.
const FORMAT: &str = "herald-cwasm-1";

/// An entry of this engine not loaded for this long is removed: its
/// component was replaced or its instance removed (a plugin loaded again
/// later is compiled again, once).
const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A temporary file older than this was left by a write that did not finish.
const TEMP_LEFT_FOR: Duration = Duration::from_secs(3600);

/// What [`CompileCache::prune`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Files removed.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

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
                    // Its modification time is its last use (see `prune`).
                    touch(&entry);
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

impl CompileCache {
    /// Removes what this cache will not load again: entries of another
    /// engine key (another Herald or wasmtime build, or other engine
    /// settings), entries of this one not loaded for 30 days, and temporary
    /// files an interrupted write left. Files it did not write are left
    /// alone. A removed entry still mapped by a running instance stays
    /// readable (the mapping keeps the file).
    pub fn prune(&self) -> Pruned {
        self.prune_at(SystemTime::now())
    }

    fn prune_at(&self, now: SystemTime) -> Pruned {
        let mut pruned = Pruned::default();
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return pruned;
        };
        let older_than = |meta: &std::fs::Metadata, age: Duration| {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d > age)
        };
        for item in dir.flatten() {
            let path = item.path();
            let (Some(name), Ok(meta)) =
                (path.file_name().and_then(|n| n.to_str()), item.metadata())
            else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let remove = match entry_name(name) {
                Some(EntryName::Temp) => older_than(&meta, TEMP_LEFT_FOR),
                Some(EntryName::Entry { key, compiled }) => {
                    key != self.engine_key
                        // An entry's age is its `.cwasm`'s; its checksum
                        // file goes with it.
                        || (compiled && older_than(&meta, UNUSED_FOR))
                        || (!compiled && !path.with_extension("cwasm").exists()
                            && older_than(&meta, TEMP_LEFT_FOR))
                }
                None => false,
            };
            if remove && std::fs::remove_file(&path).is_ok() {
                pruned.files += 1;
                pruned.bytes += meta.len();
                if name.ends_with(".cwasm") {
                    let digest = path.with_extension("sha256");
                    if let Ok(m) = std::fs::metadata(&digest) {
                        if std::fs::remove_file(&digest).is_ok() {
                            pruned.files += 1;
                            pruned.bytes += m.len();
                        }
                    }
                }
            }
        }
        pruned
    }
}

/// A file name this cache writes.
#[derive(Debug, PartialEq)]
enum EntryName<'a> {
    /// `<sha256>-<engine key>.cwasm` (`compiled`) or `.sha256`.
    Entry { key: &'a str, compiled: bool },
    /// `<sha256>-<engine key>.tmp.<pid>.<random>`: a write under way or
    /// interrupted.
    Temp,
}

fn entry_name(name: &str) -> Option<EntryName<'_>> {
    let is_sha = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let is_key = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (stem, rest) = name.split_once('.')?;
    let (sha, key) = stem.split_once('-')?;
    if !is_sha(sha) || !is_key(key) {
        return None;
    }
    match rest {
        "cwasm" => Some(EntryName::Entry {
            key,
            compiled: true,
        }),
        "sha256" => Some(EntryName::Entry {
            key,
            compiled: false,
        }),
        _ if rest.starts_with("tmp.") => Some(EntryName::Temp),
        _ => None,
    }
}

/// Sets `path`'s modification time to now (best effort: a cache on a
/// read-only directory still loads).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "herald-cache-test-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn file(dir: &Path, name: &str, age: Duration, now: SystemTime) -> PathBuf {
        let path = dir.join(name);
        let f = std::fs::File::create(&path).expect("create");
        f.set_modified(now - age).expect("set mtime");
        path
    }

    #[test]
    fn names_it_writes_and_only_those() {
        let sha = "ab".repeat(32);
        let ok = |n: String| entry_name(&Box::leak(n.into_boxed_str())[..]);
        assert_eq!(
            ok(format!("{sha}-0123456789abcdef.cwasm")),
            Some(EntryName::Entry {
                key: "0123456789abcdef",
                compiled: true
            })
        );
        assert_eq!(
            ok(format!("{sha}-0123456789abcdef.tmp.42.0badcafe")),
            Some(EntryName::Temp)
        );
        assert_eq!(ok(format!("{sha}-0123456789abcdef.wasm")), None);
        assert_eq!(entry_name("notes-0123456789abcdef.cwasm"), None);
        assert_eq!(entry_name("README.md"), None);
    }

    #[test]
    fn prune_removes_what_this_engine_cannot_use_or_did_not_use_for_long() {
        let dir = scratch_dir();
        let engine = Engine::default();
        let cache = CompileCache::new(dir.clone(), &engine, "test");
        let key = cache.engine_key.clone();
        let (a, b, c) = ("aa".repeat(32), "bb".repeat(32), "cc".repeat(32));
        let now = SystemTime::now();
        let fresh = Duration::from_secs(60);
        let old = UNUSED_FOR + Duration::from_secs(3600);
        let kept = [
            file(&dir, &format!("{a}-{key}.cwasm"), fresh, now),
            file(&dir, &format!("{a}-{key}.sha256"), old, now),
            file(&dir, &format!("{b}-{key}.tmp.7.00000001"), fresh, now),
            file(&dir, "notes.txt", old, now),
        ];
        let removed = [
            // Not loaded for over 30 days, with its checksum.
            file(&dir, &format!("{c}-{key}.cwasm"), old, now),
            file(&dir, &format!("{c}-{key}.sha256"), old, now),
            // Another engine's, however new.
            file(&dir, &format!("{a}-0123456789abcdef.cwasm"), fresh, now),
            file(&dir, &format!("{a}-0123456789abcdef.sha256"), fresh, now),
            // An interrupted write, and a checksum whose entry is gone.
            file(
                &dir,
                &format!("{b}-{key}.tmp.7.00000002"),
                TEMP_LEFT_FOR * 2,
                now,
            ),
            file(&dir, &format!("{b}-{key}.sha256"), TEMP_LEFT_FOR * 2, now),
        ];
        std::fs::write(&removed[2], b"12345").expect("write");
        let pruned = cache.prune_at(now);
        for p in &kept {
            assert!(p.exists(), "kept: {}", p.display());
        }
        for p in &removed {
            assert!(!p.exists(), "removed: {}", p.display());
        }
        assert_eq!(
            pruned,
            Pruned {
                files: removed.len(),
                bytes: 5
            }
        );
        // A second pass finds nothing more.
        assert_eq!(cache.prune_at(now), Pruned::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_hit_marks_the_entry_used() {
        let dir = scratch_dir();
        let engine = Engine::default();
        let cache = CompileCache::new(dir.clone(), &engine, "test");
        // The smallest component: its preamble (magic, version 0x0d, layer 1).
        let bytes = b"\0asm\x0d\0\x01\0".to_vec();
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let source = dir.join("c.wasm");
        cache
            .load(&engine, &bytes, &sha, &source)
            .expect("compiled");
        let entry = cache.entry(&sha);
        let long_ago = SystemTime::now() - UNUSED_FOR * 2;
        std::fs::File::options()
            .append(true)
            .open(&entry)
            .and_then(|f| f.set_modified(long_ago))
            .expect("age the entry");
        cache
            .load(&engine, &bytes, &sha, &source)
            .expect("from the cache");
        let used = std::fs::metadata(&entry)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert!(used > long_ago + UNUSED_FOR, "touched on a hit");
        assert_eq!(cache.prune(), Pruned::default(), "a used entry stays");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
