//! The process's open-file limit and the connection cap derived from it. Only the binaries call
//! this, once at start-up: the gateway library never reads the host's limits (the simulation and
//! the tests pass explicit caps), so nothing in it depends on the machine it runs on.
//!
//! Every client connection holds a file descriptor. A process that accepts until the kernel says
//! `EMFILE` can no longer open anything else either: not a backend channel, not a Redis
//! connection, not even its health port's next probe. So, as servers do, the binary raises the
//! soft `RLIMIT_NOFILE` to the hard limit, and when `http.connections_max` is 0 it caps
//! connections at that limit less a reserve; past the cap a client gets a polite 503.

use std::io;

use crate::serve::HttpConfig;

/// The most descriptors kept back from client connections for everything else: backend
/// channels, Redis, log files, and the short-lived socket of a refusal.
pub const RESERVED_FILES_MAX: u64 = 1_024;

/// The fewest connections a derived cap may allow: below it the binary refuses to start rather
/// than serve a handful of clients.
pub const CONNECTIONS_FLOOR: usize = 128;

/// Where a soft limit is raised to when the hard limit is "unlimited", which Linux does not
/// accept for open files (its default `fs.nr_open`).
const UNLIMITED_TARGET: u64 = 1 << 20;

/// The process's open-file limits, after [`raise_soft_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit the process started with.
    pub soft_before: u64,
    /// The soft limit now: what the process may really open.
    pub limit: u64,
    /// The hard limit (the ceiling of the soft one).
    pub hard: u64,
}

/// Why the binary will not start with the connection cap it would derive.
#[derive(Debug, thiserror::Error)]
pub enum OpenFilesError {
    /// The limits could not be read or set.
    #[error("cannot read or raise the open-file limit: {0}")]
    Limit(#[from] io::Error),
    /// The derived cap is below [`CONNECTIONS_FLOOR`].
    #[error(
        "http.connections_max = 0 derives {cap} connections from the open-file limit of {limit} \
         ({reserved} kept for backends, Redis and files), below the floor of {floor}: raise the \
         limit (`ulimit -n`, systemd's LimitNOFILE=) or set http.connections_max \
         (GATEWAY_HTTP__CONNECTIONS_MAX)",
        floor = CONNECTIONS_FLOOR
    )]
    BelowFloor {
        /// The open-file limit after raising it.
        limit: u64,
        /// The descriptors kept back.
        reserved: u64,
        /// The cap that limit gives.
        cap: usize,
    },
}

/// Raises the soft open-file limit to the hard one (or to 2^20 when the hard one is unlimited),
/// and returns the limits. A soft limit that cannot be raised is kept, with a warning.
pub fn raise_soft_limit() -> io::Result<OpenFiles> {
    let (soft_before, hard) = rlimit::Resource::NOFILE.get()?;
    let target = if hard == rlimit::INFINITY {
        UNLIMITED_TARGET
    } else {
        hard
    };
    let mut limit = soft_before;
    if soft_before < target {
        match rlimit::Resource::NOFILE.set(target, hard) {
            Ok(()) => limit = target,
            Err(error) => tracing::warn!(
                soft_limit = soft_before,
                hard_limit = hard,
                %error,
                "cannot raise the open-file limit; keeping it"
            ),
        }
    }
    Ok(OpenFiles {
        soft_before,
        limit,
        hard,
    })
}

/// The descriptors kept back from client connections under `limit`: a quarter of it, at most
/// [`RESERVED_FILES_MAX`].
pub fn reserved_files(limit: u64) -> u64 {
    (limit / 4).min(RESERVED_FILES_MAX)
}

/// The connection cap an open-file limit allows: the limit less [`reserved_files`].
pub fn connections_cap(limit: u64) -> usize {
    usize::try_from(limit - reserved_files(limit)).unwrap_or(usize::MAX)
}

/// Raises the open-file limit, then gives `http.connections_max` its value when it is 0 (the
/// default): [`connections_cap`] of the limit, refused below [`CONNECTIONS_FLOOR`]. Logs the
/// limit and the cap, and warns when an explicit cap is more than the limit can hold.
pub fn resolve_connections_max(http: &mut HttpConfig) -> Result<OpenFiles, OpenFilesError> {
    let files = raise_soft_limit()?;
    let derived = connections_cap(files.limit);
    if http.connections_max == 0 {
        if derived < CONNECTIONS_FLOOR {
            return Err(OpenFilesError::BelowFloor {
                limit: files.limit,
                reserved: reserved_files(files.limit),
                cap: derived,
            });
        }
        http.connections_max = derived;
        tracing::info!(
            open_files_limit = files.limit,
            raised_from = files.soft_before,
            reserved = reserved_files(files.limit),
            connections_max = derived,
            "connection cap derived from the open-file limit"
        );
    } else if http.connections_max > derived {
        tracing::warn!(
            open_files_limit = files.limit,
            connections_max = http.connections_max,
            "http.connections_max is more than the open-file limit leaves for connections \
             ({derived}); accepts may fail with `too many open files` before the cap refuses"
        );
    } else {
        tracing::info!(
            open_files_limit = files.limit,
            raised_from = files.soft_before,
            connections_max = http.connections_max,
            "connection cap from http.connections_max"
        );
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_a_quarter_of_a_small_limit_and_1024_of_a_large_one() {
        assert_eq!(connections_cap(20_000), 18_976);
        assert_eq!(connections_cap(1_024), 768);
        assert_eq!(connections_cap(4_096), 3_072);
        assert_eq!(connections_cap(1 << 20), (1 << 20) - 1_024);
        assert_eq!(connections_cap(128), 96);
        assert!(connections_cap(169) < CONNECTIONS_FLOOR);
        assert_eq!(connections_cap(170), CONNECTIONS_FLOOR);
    }
}
