//! `mvault-test`: `mvault` with its test hooks on (MVAULT_TEST_CRASH, MVAULT_TEST_PAUSE, MVAULT_TEST_NOW), for
//! the integration suite's crash, outage and clock tests. Built only with the `test-hooks` feature
//! (`./test` turns it on); never part of a release.

fn main() {
    mvault::main(mvault::TestHooks::FromEnvironment)
}
