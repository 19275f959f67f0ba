//! `mvault`, the program that ships: no environment variable reaches a fault point or the clock.

fn main() {
    mvault::main(mvault::TestHooks::Off)
}
