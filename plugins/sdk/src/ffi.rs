//! The `extern "C"` side of a plugin, generic over its [`RulePlugin`]: what [`crate::export_rule!`]
//! points the entry table at. This module is the SDK's only unsafe code: it turns the host's raw
//! pointers back into slices, and it catches every panic before it reaches the C boundary.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::abi::{ABI_VERSION, RawOutcome, RawUpdate, RuleEntry, STATUS_ERROR, STATUS_OK, STATUS_PANIC, Status};
use crate::{Options, RulePlugin, Update};

/// The entry table for rule `R`.
pub const fn entry<R: RulePlugin>() -> RuleEntry {
    RuleEntry {
        abi_version: ABI_VERSION,
        entry_size: size_of::<RuleEntry>() as u32,
        update_size: size_of::<RawUpdate>() as u32,
        outcome_size: size_of::<RawOutcome>() as u32,
        name: R::NAME.as_ptr(),
        create: create::<R>,
        check: check::<R>,
        aggregate: aggregate::<R>,
        destroy: destroy::<R>,
    }
}

/// Writes `msg` (cut at a character boundary to fit) into the host's message buffer.
fn report(outcome: &mut RawOutcome, msg: &str) {
    let mut n = msg.len().min(outcome.message_cap);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    if !outcome.message.is_null() {
        // SAFETY: the host guarantees `message` points at `message_cap` writable bytes for the call,
        // and n <= message_cap.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), outcome.message, n) };
        outcome.message_len = n;
    }
}

/// Runs `f`, turning an `Err` or a panic into a status and a message.
fn guarded(outcome: &mut RawOutcome, f: impl FnOnce(&mut RawOutcome) -> Result<(), String>) -> Status {
    match catch_unwind(AssertUnwindSafe(|| f(outcome))) {
        Ok(Ok(())) => STATUS_OK,
        Ok(Err(msg)) => {
            report(outcome, &msg);
            STATUS_ERROR
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".to_string());
            report(outcome, &format!("panicked: {msg}"));
            STATUS_PANIC
        }
    }
}

/// # Safety
///
/// `options` points at `options_len` readable bytes, `state` and `outcome` are valid for writes, as
/// the ABI requires of the host.
unsafe extern "C" fn create<R: RulePlugin>(
    options: *const u8,
    options_len: usize,
    state: *mut *mut c_void,
    outcome: *mut RawOutcome,
) -> Status {
    // SAFETY: the host passes a valid, exclusive outcome pointer (ABI contract).
    let outcome = unsafe { &mut *outcome };
    guarded(outcome, |_| {
        let bytes = if options_len == 0 {
            &[][..]
        } else {
            // SAFETY: the host passes `options_len` readable bytes (ABI contract).
            unsafe { std::slice::from_raw_parts(options, options_len) }
        };
        let text = std::str::from_utf8(bytes).map_err(|_| "options are not UTF-8".to_string())?;
        let rule = R::create(&Options::parse(text)?)?;
        // SAFETY: `state` is valid for one write (ABI contract).
        unsafe { *state = Box::into_raw(Box::new(rule)).cast() };
        Ok(())
    })
}

/// # Safety
///
/// `state` came from this plugin's `create` and was not destroyed; `outcome` is valid.
unsafe extern "C" fn check<R: RulePlugin>(state: *mut c_void, n: usize, outcome: *mut RawOutcome) -> Status {
    // SAFETY: ABI contract, as above; the host never calls into one state from two threads at once.
    let (rule, outcome) = unsafe { (&*state.cast::<R>(), &mut *outcome) };
    guarded(outcome, |_| rule.check(n))
}

/// # Safety
///
/// `state` as for `check`; `updates` points at `n` updates whose `values` each point at `len` floats;
/// `out` at `len` writable floats not overlapping them; `outcome` is valid.
unsafe extern "C" fn aggregate<R: RulePlugin>(
    state: *mut c_void,
    updates: *const RawUpdate,
    n: usize,
    len: usize,
    out: *mut f32,
    outcome: *mut RawOutcome,
) -> Status {
    // SAFETY: ABI contract, as above.
    let (rule, outcome) = unsafe { (&mut *state.cast::<R>(), &mut *outcome) };
    guarded(outcome, |outcome| {
        // SAFETY: ABI contract: n updates, each with `len` floats, and `len` floats of output.
        let (raw, out) = unsafe { (std::slice::from_raw_parts(updates, n), std::slice::from_raw_parts_mut(out, len)) };
        let views: Vec<Update> = raw
            .iter()
            .map(|u| Update {
                sender: u.sender,
                weight: u.weight,
                // SAFETY: see above; an empty update may come with a dangling pointer, so len 0 is
                // built without touching it.
                values: if len == 0 { &[] } else { unsafe { std::slice::from_raw_parts(u.values, len) } },
            })
            .collect();
        let result = rule.aggregate(&views, out)?;
        outcome.written = result.written.unwrap_or(len);
        match result.selected {
            None => outcome.selected_len = usize::MAX,
            Some(positions) => {
                if positions.len() > outcome.selected_cap {
                    return Err(format!("selected {} positions of {n} updates", positions.len()));
                }
                for (i, &p) in positions.iter().enumerate() {
                    // SAFETY: `selected` holds `selected_cap` writable u32 (ABI contract), i < cap.
                    unsafe { *outcome.selected.add(i) = p.min(u32::MAX as usize) as u32 };
                }
                outcome.selected_len = positions.len();
            }
        }
        Ok(())
    })
}

/// # Safety
///
/// `state` came from this plugin's `create` and is destroyed once.
unsafe extern "C" fn destroy<R: RulePlugin>(state: *mut c_void) {
    if !state.is_null() {
        // SAFETY: ABI contract: the box made by `create`, freed once. A panicking Drop is caught, since
        // it must not unwind into the host.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(state.cast::<R>()) })));
    }
}
