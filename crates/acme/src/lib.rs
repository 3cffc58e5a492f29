//! The Acme demo company's own backend: the business API that Concierge calls as tools.
//!
//! It is a separate HTTP service with its own data (seeded from `examples/acme/backend/`,
//! changed in memory by refunds, cancellations and tickets), so the tools Concierge calls
//! in the demo are real HTTP calls to a real service with real rules: an order can only be
//! cancelled while it is processing, a refund cannot exceed what was paid, refunds above the
//! limit need a named approver, and a repeated `Idempotency-Key` replays the first answer
//! instead of acting twice.
//!
//! Invariant: this crate knows nothing about Concierge; it is only the company's backend.

mod data;
mod routes;
mod soap;

pub use data::{AcmeData, Customer, LoadError, Order, Product};
pub use routes::{router, AcmeState, REFUND_APPROVAL_LIMIT_CENTS};

use std::net::SocketAddr;

/// Serves the Acme backend on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    data: AcmeData,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(AcmeState::new(data));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
