//! `argon2-ceiling`: raw Argon2id hashes per second on all cores, with the
//! service's parameters (m=19456 KiB, t=2, p=1 by default), one thread per
//! core, each reusing its memory block as the service's pool does.
//!
//! `argon2-ceiling [--seconds 5] [--threads N] [--m KiB] [--t N] [--p N]`
//! prints `key=value` lines: threads, seconds, hashes, hashes_per_second,
//! ms_per_hash.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};

fn main() {
    let mut seconds = 5.0f64;
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (mut m, mut t, mut p) = (19_456u32, 2u32, 1u32);
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>| -> f64 {
        v.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: argon2-ceiling [--seconds 5] [--threads N] [--m 19456] [--t 2] [--p 1]");
            std::process::exit(2)
        })
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = num(args.next()),
            "--threads" => threads = num(args.next()) as usize,
            "--m" => m = num(args.next()) as u32,
            "--t" => t = num(args.next()) as u32,
            "--p" => p = num(args.next()) as u32,
            _ => {
                println!("usage: argon2-ceiling [--seconds 5] [--threads N(cores)] [--m 19456] [--t 2] [--p 1]");
                std::process::exit(if a == "-h" || a == "--help" { 0 } else { 2 });
            }
        }
    }
    let params = Params::new(m, t, p, Some(32)).unwrap_or_else(|e| {
        eprintln!("invalid Argon2 parameters: {e}");
        std::process::exit(2)
    });
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    // Warm-up: one hash per thread before the clock starts.
    let started = Arc::new(std::sync::Barrier::new(threads.max(1) + 1));
    let mut handles = Vec::new();
    for n in 0..threads.max(1) {
        let (argon2, stop, count, started) = (argon2.clone(), stop.clone(), count.clone(), started.clone());
        handles.push(std::thread::spawn(move || {
            let mut memory = vec![Block::default(); argon2.params().block_count()];
            let mut out = [0u8; 32];
            let salt = [n as u8; 16];
            let password = format!("load-test-password-{n}");
            let _ = argon2.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut memory);
            started.wait();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let pw = format!("{password}-{i}");
                argon2
                    .hash_password_into_with_memory(pw.as_bytes(), &salt, &mut out, &mut memory)
                    .expect("hash");
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    started.wait();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let hashes = count.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let rate = hashes as f64 / elapsed;
    println!("threads={}", threads.max(1));
    println!("params=m={m},t={t},p={p}");
    println!("seconds={elapsed:.3}");
    println!("hashes={hashes}");
    println!("hashes_per_second={rate:.3}");
    println!("ms_per_hash={:.3}", 1000.0 * threads.max(1) as f64 / rate.max(1e-9));
}
