//! JSON-RPC step (bitcoind `backupwallet` and friends).
