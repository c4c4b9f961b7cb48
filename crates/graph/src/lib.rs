//! `switchboard-graph`: the Microsoft Graph client of Switchboard — the signed-in user,
//! directory search with paging, photos, Teams presence (own and others', batched through
//! `getPresencesByUserId` in chunks of 650, `setPresence` with our client id as the session,
//! `clearPresence`, `setUserPreferredPresence`, status messages), change-notification
//! subscriptions and the webhook side of them ([`webhook`]), throttling (429/503 honoured
//! with `Retry-After` and jittered backoff, bounded), and the mapping between
//! contact-center states and Teams presence ([`mapping`]).
//!
//! Tokens come from an [`AccessTokenProvider`] (`switchboard-identity` implements it); the
//! base URL is configurable, so the same client talks to Graph or to the simulated tenant.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_graph::GraphError> {
//! use std::sync::Arc;
//! use switchboard_graph::{GraphClient, GraphConfig, StaticToken, UserQuery, is_transferable};
//! let graph = GraphClient::new(
//!     GraphConfig { client_id: "8f3b2a61-1c57-4d0e-a7b2-5c3a9e6d1f20".into(), ..GraphConfig::default() },
//!     Arc::new(StaticToken::new("eyJ0eXAi...")),
//! )?;
//! let experts = graph.users_all(&UserQuery::new().department("Billing"), 200).await?;
//! let ids: Vec<&str> = experts.iter().map(|u| u.id.as_str()).collect();
//! for p in graph.presences(&ids).await? {
//!     if is_transferable(&p) {
//!         println!("{} can take a transfer ({} / {})", p.id, p.availability, p.activity);
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod mapping;
pub mod model;
pub mod retry;
pub mod token;
pub mod webhook;

pub use client::{
    iso_duration, GraphClient, GraphConfig, PresenceUpdate, UserQuery, DEFAULT_BASE_URL,
    USER_SELECT,
};
pub use error::{GraphError, TokenError};
pub use mapping::{is_transferable, presence_for, presence_update, AgentState, NotReadyReason};
pub use model::{
    presence_subscription_resource, Activity, Availability, Page, Photo, Presence,
    PresenceStatusMessage, Subscription, SubscriptionRequest, User, MAX_IDS_PER_CALL,
};
pub use retry::RetryPolicy;
pub use token::{AccessTokenProvider, StaticToken, TokenFuture, TokenRequest};
