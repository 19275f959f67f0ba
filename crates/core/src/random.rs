//! Random bytes from the operating system, for keys, nonces, salts and ids: the one leaf both `ids` and
//! `crypto` draw on, so neither needs the other for it.

use ring::rand::{SecureRandom, SystemRandom};

/// Fill `buf` from the operating system's generator. Failing is not recoverable (no key or nonce can be made
/// safely), so it panics with a message naming the cause.
pub fn fill_random(buf: &mut [u8]) {
    SystemRandom::new().fill(buf).expect("the operating system's random number generator failed");
}
