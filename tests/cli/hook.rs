//! hook protocol tests (in progress)
