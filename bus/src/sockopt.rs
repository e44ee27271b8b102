//! The one socket option the `zmq` crate cannot set, set through libzmq's C API.
//!
//! `ZMQ_ZAP_ENFORCE_DOMAIN` (stable since libzmq 4.3) makes a CURVE server refuse every connection its ZAP
//! handler has not approved, instead of falling back to "no handler, accept" when the handler is missing.
//! With `checksum` and `malloc`, this module holds the bus crate's only `unsafe` code.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};

/// `ZMQ_ZAP_ENFORCE_DOMAIN` from libzmq's `zmq.h` (4.3.x).
const ZMQ_ZAP_ENFORCE_DOMAIN: c_int = 93;

/// Turns ZAP domain enforcement on or off for `socket`.
pub fn set_zap_enforce_domain(socket: &mut zmq::Socket, enforce: bool) -> Result<(), zmq::Error> {
    let value: c_int = c_int::from(enforce);
    // SAFETY: `as_mut_ptr` is the live libzmq socket owned by `socket`, borrowed mutably for the whole call,
    // so it cannot be closed meanwhile. The option value is a C int read by libzmq during the call only;
    // the pointer and length describe exactly that int.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            ZMQ_ZAP_ENFORCE_DOMAIN,
            (&value as *const c_int).cast::<c_void>(),
            std::mem::size_of::<c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // libzmq reports failures through errno (zmq_errno() is errno on Linux).
        Err(zmq::Error::from_raw(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)))
    }
}
