//! multiarch-operator: builds multi-architecture container images natively,
//! one Kubernetes Job per platform, then merges them into one image index.

pub mod api;
pub mod controller;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod merge;
pub mod platform;
pub mod push;
pub mod reference;
pub mod render;
pub mod telemetry;
pub mod termination;
pub mod validate;
