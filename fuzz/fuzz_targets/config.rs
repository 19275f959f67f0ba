//! `config` (MVCF): parsed before any key is known, so every byte is attacker-controlled.
//! Invariant: a parsed config re-encodes (pretty JSON + MAC) to bytes that parse to the same config,
//! whose MAC verifies under the key it was written with, and the encoding is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::crypto::SecretKey;
use mvault_core::format::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok((config, mac)) = Config::parse(data) else {
        return;
    };
    let mk = SecretKey::from_bytes([7; 32]);
    // Any outcome is fine (a forged MAC is not expected to verify); it must not panic.
    let _ = mac.verify(&mk);
    config.vault_id().expect("parse accepted a config whose vault id does not decode");
    config.validate().expect("parse accepted a config that does not validate");

    let re = config.to_bytes(&mk);
    let (config2, mac2) = Config::parse(&re).expect("re-encoded config does not parse");
    assert_eq!(config2, config, "config changed in a parse/encode/parse round trip");
    mac2.verify(&mk).expect("MAC of the re-encoded config does not verify under its key");
    assert_eq!(config2.to_bytes(&mk), re, "config encoding is not stable");
});
