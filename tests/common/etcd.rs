//! Starts a real etcd for the tests; stopped on drop.
