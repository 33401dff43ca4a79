//! Kernel doors in the I/O shell: at start-up and at every reload the sets
//! the configuration names are looked up (one that a door cannot use
//! refuses the configuration, with the command that fixes it), and
//! `CAP_NET_ADMIN` is effective on the daemon's thread only while a kernel
//! door is configured or still open (the kernel checks it on every
//! nftables and ipset message the thread sends).

use crate::config::Config;
use crate::doors::kernel::{self, KernelDoors, Refresh};
use crate::pipeline::Pipeline;
use crate::sys::caps;
use crate::{debug, info, warn};

/// Whether any event of `config` names a set.
pub fn configured(config: &Config) -> bool {
    config.events.iter().any(|e| !e.sets.is_empty())
}

/// `CAP_NET_ADMIN` on the daemon's own thread.
#[derive(Debug)]
pub struct AdminCap {
    /// The daemon narrowed its capabilities (root, `-k` not `all`): it
    /// raises and lowers this one itself. Otherwise it has what it was
    /// given, and the kernel's answers say when that is not enough.
    managed: bool,
    effective: bool,
}

impl AdminCap {
    /// As start-up left it: `effective` when the capabilities were narrowed
    /// with it kept.
    pub fn new(managed: bool, effective: bool) -> AdminCap {
        AdminCap { managed, effective }
    }

    /// Makes it effective or not; a change is logged. Raising fails when it
    /// was given up for good at start-up.
    pub fn want(&mut self, on: bool) -> Result<(), String> {
        if !self.managed || self.effective == on {
            return Ok(());
        }
        caps::set_effective(caps::KERNEL_DOORS_NEED, on).map_err(|e| {
            format!(
                "kernel doors need CAP_NET_ADMIN, which tportknockd gave up when it started \
                 without any kernel door (and -k left it out of the commands' set): \
                 restart it to use them ({e})"
            )
        })?;
        self.effective = on;
        if on {
            info!("capabilities: CAP_NET_ADMIN effective again, to write kernel doors");
        } else {
            info!("capabilities: CAP_NET_ADMIN no longer effective (no kernel door configured or open)");
        }
        Ok(())
    }

    /// Whether it is effective by the daemon's choice.
    pub fn effective(&self) -> bool {
        self.effective
    }
}

/// Makes `config`'s kernel doors writable by `pipeline`: the capability,
/// the netlink socket, every set looked up. On error (one message per
/// problem) the capability is as it was and the caller keeps (or refuses)
/// the configuration; the socket may stay open, which costs nothing.
pub fn prepare(
    pipeline: &mut Pipeline,
    config: &Config,
    cap: &mut AdminCap,
) -> Result<(), Vec<String>> {
    let wanted = configured(config);
    let open = pipeline.kernel_doors();
    let keep = wanted || open > 0;
    let before = cap.effective();
    let result = (|| {
        if wanted {
            cap.want(true).map_err(|e| vec![e])?;
        } else if open > 0 {
            // Doors left by an earlier run or configuration: the kernel
            // closes them on time; only removing them early needs this.
            if let Err(e) = cap.want(true) {
                warn!("kernel doors: {open} still open will not be removed at shutdown: {e}");
            }
        }
        if keep && !pipeline.has_backend() {
            let kd = KernelDoors::open().map_err(|e| {
                vec![format!(
                    "kernel doors: cannot open a netfilter netlink socket: {e}"
                )]
            })?;
            debug!(
                "kernel doors: a new knock refreshes a set element {}",
                match kd.refresh() {
                    Refresh::InPlace => "in place (Linux 6.12 and later)",
                    Refresh::Replace => "by replacing it in one transaction (before Linux 6.12)",
                }
            );
            pipeline.set_backend(Box::new(kd));
        }
        if wanted {
            let problems = pipeline.check_sets(config);
            if !problems.is_empty() {
                return Err(problems);
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = cap.want(before);
        return result;
    }
    if wanted {
        let names: Vec<String> = kernel::sets_named(&config.events)
            .iter()
            .map(|s| s.to_string())
            .collect();
        info!(
            "kernel doors: {} ready; the daemon keeps CAP_NET_ADMIN effective to write them",
            names.join(", ")
        );
    } else if open > 0 {
        info!(
            "kernel doors: {open} still open from before; the daemon keeps CAP_NET_ADMIN \
             effective to remove them at shutdown"
        );
    }
    // Lowering cannot fail (a capability can always be given up).
    let _ = cap.want(keep);
    Ok(())
}
