//! The auth service load generator: HTTP/1.1 keep-alive client, scenarios,
//! closed and open (coordinated-omission corrected) models, HDR histograms,
//! and the table / JSON / HTML reports.

pub mod client;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod stats;

/// `n` random bytes as lower-case hex, from the kernel.
pub fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !filled {
        // No /dev/urandom: mix the clock and the process id.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ (u128::from(std::process::id()) << 64);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
