//! Work spread over a few threads: `map` runs a function over a slice on `workers` scoped threads, which take
//! the next item as they finish one, and returns the outcomes in the slice's order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// One worker per core: for CPU work (decrypting, decoding, hashing).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

pub fn map<T: Sync, R: Send>(items: &[T], workers: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let outcomes: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                let outcome = work(item);
                *outcomes[i].lock().expect("outcome slot") = Some(outcome);
            });
        }
    });
    outcomes.into_iter().map(|o| o.into_inner().expect("outcome slot").expect("every item was done")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn outcomes_come_back_in_order_whatever_the_workers() {
        let items: Vec<u64> = (0..1000).collect();
        for workers in [0, 1, 3, 64] {
            let out = super::map(&items, workers, |x| x * 2);
            assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert!(super::map(&[] as &[u8], 4, |x| *x).is_empty());
    }
}
