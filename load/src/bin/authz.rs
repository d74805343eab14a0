//! Authorization-check cost: `Memberships::role` (what every workspace
//! request and introspection with `workspace_id` goes through) with a cold
//! cache (each check loads from PostgreSQL) and a warm one (actor round trip
//! and a moka hit), as the number of workspaces and members grows.
//!
//! Starts its own throwaway PostgreSQL. Prints a markdown table.

use std::time::{Duration, Instant};

use auth_service::actors::membership::Memberships;
use auth_service::db;
use auth_service::db::local_pg::{LocalPgOptions, LocalPostgres};
use uuid::Uuid;

/// (workspaces, members per workspace)
const GRID: &[(i64, i64)] = &[(1, 1), (1, 1000), (100, 100), (10_000, 1), (10_000, 10)];
/// Checks timed per configuration and phase.
const SAMPLES: usize = 2000;
/// Concurrent callers in the throughput phase.
const CALLERS: usize = 16;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn pick(n: usize, seed: &mut u64) -> usize {
    // xorshift: cheap, deterministic, good enough to spread the picks.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed % n as u64) as usize
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pg = tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default())).await??;
    println!("| workspaces | members each | cold µs/check | warm µs/check | warm checks/s ({CALLERS} callers) | RSS MiB after |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (n, &(workspaces, members)) in GRID.iter().enumerate() {
        let name = format!("authz_{n}");
        let admin = db::connection_config(&pg.url("postgres"))?;
        db::connect(&admin).await?.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        let url = pg.url(&name);
        auth_service::startup::migrate(&url).await?;
        let pool = db::pool(&url, 16)?;
        let client = pool.get().await?;
        client
            .batch_execute(&format!(
                "INSERT INTO users (id, email, password_hash)
                   SELECT gen_random_uuid(), 'u' || i || '@example.com', 'x' FROM generate_series(1, {members}) i;
                 INSERT INTO workspaces (id, name, owner_id)
                   SELECT gen_random_uuid(), 'w' || i, (SELECT id FROM users LIMIT 1) FROM generate_series(1, {workspaces}) i;
                 INSERT INTO workspace_members (workspace_id, user_id, role)
                   SELECT w.id, u.id, 'viewer' FROM workspaces w CROSS JOIN users u;
                 ANALYZE;"
            ))
            .await?;
        let pairs: Vec<(Uuid, Uuid)> = client
            .query("SELECT workspace_id, user_id FROM workspace_members", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        drop(client);
        let memberships = Memberships::start(pool.clone(), Duration::from_secs(300)).await?;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let sample: Vec<(Uuid, Uuid)> = (0..SAMPLES).map(|_| pairs[pick(pairs.len(), &mut seed)]).collect();

        // Cold: every check after a full clear loads from the database.
        let mut cold = Duration::ZERO;
        for &(w, u) in sample.iter().take(SAMPLES / 4) {
            memberships.clear_all().await;
            let started = Instant::now();
            memberships.role(w, u).await?;
            cold += started.elapsed();
        }
        let cold_us = cold.as_secs_f64() * 1e6 / (SAMPLES / 4) as f64;

        // Warm every sampled pair, then time the same checks again.
        for &(w, u) in &sample {
            memberships.role(w, u).await?;
        }
        let started = Instant::now();
        for &(w, u) in &sample {
            memberships.role(w, u).await?;
        }
        let warm_us = started.elapsed().as_secs_f64() * 1e6 / SAMPLES as f64;

        // Throughput of warm checks from many callers at once.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut tasks = Vec::new();
        for caller in 0..CALLERS {
            let (memberships, sample) = (memberships.clone(), sample.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                let mut i = caller;
                while Instant::now() < deadline {
                    let (w, u) = sample[i % sample.len()];
                    if memberships.role(w, u).await.is_ok() {
                        done += 1;
                    }
                    i += 7;
                }
                done
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await?;
        }
        println!(
            "| {workspaces} | {members} | {cold_us:.1} | {warm_us:.2} | {:.0} | {:.0} |",
            total as f64 / 2.0,
            rss_mib()
        );
    }
    Ok(())
}
