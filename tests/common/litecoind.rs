//! Starts a real litecoind for the tests; stopped on drop.
