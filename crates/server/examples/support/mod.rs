//! What the benchmark binaries share: reading their arguments and percentiles, and the key
//! the measured server is called with.

/// The admin key a benchmark's server accepts (from its config, as an environment key
/// would be); the `run` scripts send the same one. Peers ignore it.
pub const BENCH_KEY: &str = "bench-admin-key-0123456789abcdef";

/// Default headers carrying [`BENCH_KEY`].
pub fn auth_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {BENCH_KEY}").parse().expect("a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    headers
}

/// The value after `name` on the command line.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// The number after `name`, or `default`.
pub fn number(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
}

/// The `q` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}
