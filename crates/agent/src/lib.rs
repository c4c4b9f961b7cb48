//! The Switchboard agent engine: what the desktop app and the headless `switchboard-agent`
//! CLI share. Today it keeps the link to the routing service, the person's settings and the
//! sound-device checks of Settings → Audio ([`audio`]), the person's Microsoft account with
//! its Graph client ([`account`]), the softphone: a call engine driven by commands that
//! reports an event stream ([`call`]), and the desk: the router's agent API and the phone
//! registered with the credentials it issues or with a plain SIP account of Settings → Phone
//! (its password kept by [`sip_password`]), as the window drives them ([`desk`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use switchboard_agent::router::{LinkPolicy, RouterLink};
//! use switchboard_agent::settings::SettingsStore;
//!
//! let settings = SettingsStore::for_current_user()?.load()?;
//! let link = RouterLink::spawn(settings.router_url, LinkPolicy::default());
//! let mut changes = link.subscribe();
//! changes.changed().await?;
//! println!("router is {:?}", changes.borrow().state);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod account;
pub mod audio;
pub mod call;
pub mod desk;
pub mod directory;
pub mod engine;
pub mod links;
pub mod notice;
pub mod router;
pub mod settings;
pub mod sip_password;
pub mod state;
pub mod tray;

pub use engine::{Agent, PhoneSettingsView};

pub use audio::{
    AudioDevice, AudioDevices, AudioError, DeviceNotice, MicLevel, SoundTestResult, TestSound,
};
pub use router::{ConnectionState, LinkPolicy, RouterLink, RouterStatus, RouterTokens};
pub use settings::{
    AudioSettings, Language, PhoneSettings, PhoneSource, Settings, SettingsError, SettingsStore,
    SipAccountSettings, SipTransport,
};
