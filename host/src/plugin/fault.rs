//! What went wrong when a plugin failed, as a kind the host can act on.
//!
//! The kind is read from where the failure was decided (the memory limiter,
//! the epoch callback, wasmtime's trap code, the host's own checks of an
//! answer), never from an error's text: a message is for the user, and may
//! change.

use std::time::Duration;

use wasmtime::{ResourceLimiter, Trap};

pub use crate::proxy::policy::{Fault, FaultReason};

/// Raised by the epoch callback when a call's ticks are spent.
#[derive(Debug, thiserror::Error)]
#[error("plugin deadline exceeded")]
pub struct DeadlineExceeded;

/// Raised by [`MemoryCap`] when an instance would grow past its limit.
#[derive(Debug, thiserror::Error)]
#[error("plugin memory limit of {0} bytes exceeded")]
pub struct MemoryExceeded(usize);

/// The memory limiter of one instance. Denying growth with an error (not
/// `Ok(false)`) traps at once, with a cause the host recognises.
pub struct MemoryCap {
    pub bytes: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.bytes {
            return Err(wasmtime::Error::new(MemoryExceeded(self.bytes)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// The kind of a failed call, from the error wasmtime returned.
pub fn classify(e: &wasmtime::Error, deadline: Duration) -> FaultReason {
    if e.is::<DeadlineExceeded>() {
        return FaultReason::Deadline(deadline);
    }
    if let Some(MemoryExceeded(bytes)) = e.downcast_ref::<MemoryExceeded>() {
        return FaultReason::Memory(*bytes);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FaultReason::Deadline(deadline),
        Some(Trap::UnreachableCodeReached) => FaultReason::Trap {
            code: "unreachable code reached (a panic in a Rust plugin)".into(),
            detail: format!("{e:#}"),
        },
        Some(trap) => FaultReason::Trap {
            code: trap.to_string(),
            detail: format!("{e:#}"),
        },
        None => FaultReason::Other(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_error_type_not_its_text() {
        let d = Duration::from_millis(5);
        assert_eq!(
            classify(&wasmtime::Error::new(DeadlineExceeded), d),
            FaultReason::Deadline(d)
        );
        assert_eq!(
            classify(&wasmtime::Error::new(MemoryExceeded(1 << 20)), d),
            FaultReason::Memory(1 << 20)
        );
        // A message that mentions memory is not a memory fault.
        let worded = wasmtime::Error::msg("out of memory in the plugin's words");
        assert!(matches!(classify(&worded, d), FaultReason::Other(_)));
        let trap = classify(&wasmtime::Error::new(Trap::UnreachableCodeReached), d);
        assert!(matches!(trap, FaultReason::Trap { .. }), "{trap:?}");
    }

    #[test]
    fn the_limiter_refuses_growth_past_the_cap_with_its_own_error() {
        let mut cap = MemoryCap { bytes: 1 << 20 };
        assert!(cap.memory_growing(0, 1 << 20, None).unwrap());
        let e = cap.memory_growing(0, (1 << 20) + 1, None).unwrap_err();
        assert_eq!(classify(&e, Duration::ZERO), FaultReason::Memory(1 << 20));
    }
}
