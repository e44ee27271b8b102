//! CURVE on the job's tcp link: the master serves with its key and an allowlist of the children's keys;
//! each child connects with its own key and the master's public key. inproc and ipc links stay local.

use shoal_bus::security::{Allowlist, Keypair, ZapHandler};

use super::JobError;
use super::config::{LinkSecurity, TransportConfig};

/// The master's node id: its key is `node-0.key`, its public key `node-0.pub`.
pub const MASTER_NODE: u32 = 0;

/// Prepares the master's socket before it binds. The returned handler must live as long as the socket.
pub fn secure_master(
    ctx: &zmq::Context,
    transport: &TransportConfig,
    socket: &mut zmq::Socket,
) -> Result<Option<ZapHandler>, JobError> {
    let LinkSecurity::Curve(dir) = transport.security()? else { return Ok(None) };
    let key = Keypair::load(&dir, MASTER_NODE)?;
    let allowlist = Allowlist::load_dir(&dir)?;
    let zap = ZapHandler::start(ctx, allowlist)?;
    key.serve_on(socket)?;
    Ok(Some(zap))
}

/// Prepares child `id`'s socket before it connects.
pub fn secure_child(transport: &TransportConfig, id: u32, socket: &zmq::Socket) -> Result<(), JobError> {
    let LinkSecurity::Curve(dir) = transport.security()? else { return Ok(()) };
    let key = Keypair::load(&dir, id)?;
    let master = Allowlist::load_dir(&dir)?.public_of(MASTER_NODE).ok_or_else(|| {
        JobError::Protocol(format!("{}: no node-{MASTER_NODE}.pub, the master's public key", dir.display()))
    })?;
    key.connect_with(socket, &master)?;
    Ok(())
}
