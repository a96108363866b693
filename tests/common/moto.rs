//! Starts a real moto for the tests; stopped on drop.
