//! restic-style snapshot retention.
