//! The wasmtime engine, its epoch ticker, and the compiled-plugin cache.
//!
//! Compiling a plugin with Cranelift takes tens of milliseconds; loading a
//! compiled one takes a fraction of one. The cache is keyed by the
//! component's SHA-256 and the engine's compatibility hash, so a different
//! wasmtime or CPU never loads a stale artifact.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::PluginError;
use super::bindings::Plugin;
use super::state::HostState;

/// How often the epoch advances: the granularity of deadlines.
pub const TICK: Duration = Duration::from_millis(10);

/// Resource limits for every plugin call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock budget of one hook call.
    pub deadline: Duration,
    /// Linear memory one plugin instance may grow to.
    pub memory_bytes: usize,
    /// The largest body the host buffers for a plugin that asked for one.
    pub body_bytes: usize,
    /// Instances of one plugin that may exist at once: each may grow to
    /// `memory_bytes`, so this bounds the memory plugins can take, and the
    /// exchanges a plugin serves at once (the rest wait for an instance).
    pub instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(1000),
            memory_bytes: 256 << 20,
            body_bytes: 64 << 20,
            instances: 32,
        }
    }
}

impl Limits {
    pub fn deadline_ticks(&self) -> u64 {
        (self.deadline.as_millis() / TICK.as_millis()).max(1) as u64 + 1
    }
}

pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub limits: Limits,
    cache_dir: Option<PathBuf>,
    /// The engine's compatibility hash, part of every cache key.
    compat: u64,
}

impl Runtime {
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Hooks run as futures on the proxy's runtime and yield at every
        // epoch tick (see `chain`), so a plugin that computes for its whole
        // deadline delays only its own exchange.
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        // The ticker holds the engine weakly: it ends with the last Runtime
        // instead of keeping every compiled plugin alive for the process.
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut compat);
        Ok(Self {
            compat: compat.finish(),
            engine,
            linker,
            limits,
            cache_dir,
        })
    }

    /// The user's cache dir, or none when there is no writable home (as in
    /// the Nix sandbox, where precompiled plugins come from the store).
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("BUILDPROXY_PLUGIN_CACHE") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("buildproxy/plugins"))
    }

    /// Compiles a component, or loads it from the cache. `sha256`: the
    /// bytes' SHA-256 when known (bundled plugins), else they are hashed.
    pub fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: Option<&[u8; 32]>,
    ) -> Result<Component, PluginError> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(self.cache_key(bytes, sha256)));
        // An artifact someone else could have written is native code we
        // did not make: compile instead, and cache nothing there.
        let cached = cached.filter(|path| match super::cache_trust::check(path) {
            Ok(()) => true,
            Err(why) if path.exists() => {
                tracing::warn!("not loading the compiled plugin {name}: {why}; compiling it");
                false
            }
            // Not there yet: the directory must be safe to write into.
            Err(_) => path
                .parent()
                .is_some_and(|d| super::cache_trust::check_dir(d).is_ok()),
        });
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the cache holds only what `serialize` wrote, keyed by
            // this engine's compatibility hash; wasmtime checks the header.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(c) => {
                    tracing::debug!("loaded plugin {name} from the cache {}", path.display());
                    return Ok(c);
                }
                Err(e) => tracing::debug!("plugin cache {}: {e:#}; recompiling", path.display()),
            }
        }
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, bytes).map_err(|e| PluginError::Compile {
            name: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        tracing::debug!("compiled plugin {name} in {:?}", started.elapsed());
        if let Some(path) = &cached
            && let Err(e) = write_cache(path, &component)
        {
            tracing::debug!("not caching plugin {name} at {}: {e}", path.display());
        }
        Ok(component)
    }

    /// Writes the compiled form of `bytes` into `dir` (for packaging).
    pub fn precompile_into(
        &self,
        dir: &Path,
        name: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, PluginError> {
        let component = Component::new(&self.engine, bytes).map_err(|e| PluginError::Compile {
            name: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        let path = dir.join(self.cache_key(bytes, None));
        write_cache(&path, &component)
            .map_err(|e| PluginError::Engine(format!("{}: {e}", path.display())))?;
        Ok(path)
    }

    /// SHA-256 of (the component's SHA-256, the engine's compatibility
    /// hash): a start hashes 40 bytes per plugin, not its component.
    fn cache_key(&self, bytes: &[u8], sha256: Option<&[u8; 32]>) -> String {
        let component: [u8; 32] = match sha256 {
            Some(d) => *d,
            None => Sha256::digest(bytes).into(),
        };
        let mut h = Sha256::new();
        h.update(component);
        h.update(self.compat.to_le_bytes());
        let digest = h.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}.cwasm")
    }
}

fn write_cache(path: &Path, component: &Component) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
