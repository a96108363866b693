//! EBS snapshot step: create, wait, prune.
