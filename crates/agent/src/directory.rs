//! The subject-matter-expert directory of the desktop: people of the tenant found by name,
//! department or skill, with their live Teams presence, favourites first, and whether they
//! can take a transfer now ([`switchboard_graph::is_transferable`]).
//!
//! Graph returns `skills` only for one user at a time (`GET /users/{id}?$select=skills`), so
//! skills are fetched per person, a few at a time, and kept for the session — and only where
//! the tenant says the app may (`read_skills`: `User.Read.All`, as skills are outside the
//! basic profile `User.ReadBasic.All` reads).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use switchboard_graph::{is_transferable, Availability, GraphClient, Presence, User, UserQuery};

use crate::account::AccountError;
use crate::call::printable;

/// At most this many people in one answer (a directory page, not an export).
pub const MAX_RESULTS: usize = 200;
/// Skills are fetched this many people at a time.
const SKILL_FETCHES: usize = 8;

/// Presence as the window shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PresenceInfo {
    /// The user's object id.
    pub id: String,
    /// Graph's availability, or `Unknown` for a value this build does not know.
    pub availability: String,
    /// Graph's activity, or `Unknown`.
    pub activity: String,
    pub status_message: Option<String>,
    /// Whether a transfer may be offered now.
    pub transferable: bool,
}

impl From<&Presence> for PresenceInfo {
    fn from(p: &Presence) -> Self {
        // The graph crate's enum is the list of values we know; the window has a label
        // for each, and for `Unknown`.
        let availability = match &p.availability {
            Availability::Unknown(_) => "Unknown".to_owned(),
            a => a.as_str().to_owned(),
        };
        let activity = match &p.activity {
            switchboard_graph::Activity::Unknown(_) => "Unknown".to_owned(),
            a => a.as_str().to_owned(),
        };
        Self {
            id: p.id.clone(),
            availability,
            activity,
            status_message: p.status_text(),
            transferable: is_transferable(p),
        }
    }
}

/// A person of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Person {
    pub id: String,
    pub display_name: String,
    pub username: Option<String>,
    pub department: Option<String>,
    pub job_title: Option<String>,
    pub skills: Vec<String>,
    /// Their phone numbers (business phones, then mobile), to call from the directory.
    #[serde(default)]
    pub phones: Vec<String>,
    pub favourite: bool,
    pub presence: Option<PresenceInfo>,
}

/// What the directory is asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct DirectoryQuery {
    /// Name or address, as typed.
    pub text: Option<String>,
    pub department: Option<String>,
    pub skill: Option<String>,
    /// Only people who can take a transfer now.
    pub available_only: bool,
    pub favourites_only: bool,
}

/// Favourites per account, in `favourites.json` in the configuration folder.
#[derive(Debug)]
pub struct Favourites {
    path: PathBuf,
    by_account: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Favourites {
    /// Loads the file (a missing or damaged file is an empty list; it is rewritten on the
    /// next change).
    pub fn open(path: PathBuf) -> Self {
        let by_account = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            by_account: Mutex::new(by_account),
        }
    }

    pub fn of(&self, account: &str) -> BTreeSet<String> {
        self.by_account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .cloned()
            .unwrap_or_default()
    }

    /// Marks or unmarks a person; saved at once.
    pub fn set(&self, account: &str, person: &str, on: bool) -> Result<(), AccountError> {
        let mut map = self.by_account.lock().unwrap_or_else(|p| p.into_inner());
        let set = map.entry(account.to_owned()).or_default();
        if on {
            set.insert(person.to_owned());
        } else {
            set.remove(person);
        }
        let bytes =
            serde_json::to_vec_pretty(&*map).map_err(|e| AccountError::Tenant(e.to_string()))?;
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| {
                AccountError::Tenant(format!(
                    "cannot save favourites to {}: {e}",
                    self.path.display()
                ))
            })
    }
}

/// A person's photo as the window shows it: a `data:` URL (the window's content security
/// policy allows `data:` images and nothing remote), or none (the window draws initials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PersonPhoto {
    pub id: String,
    pub data_url: Option<String>,
}

/// Photos larger than this are not shown (Graph's 64×64 JPEGs are a few KB).
pub const MAX_PHOTO_BYTES: usize = 256 * 1024;
/// Photos kept in memory at most (a directory of thousands is paged through).
pub const MAX_CACHED_PHOTOS: usize = 2_000;

/// Image types shown; anything else is dropped.
const PHOTO_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/svg+xml",
];

/// A `data:` URL for a photo, when it is an image type we show and not too large.
pub fn photo_data_url(p: &switchboard_graph::Photo) -> Option<String> {
    use base64::Engine;
    let kind = p
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    // Graph serves some JPEGs as image/pjpeg (progressive JPEG, Internet Explorer's name),
    // which browsers and webviews know only as image/jpeg.
    let kind = if kind == "image/pjpeg" {
        "image/jpeg".to_string()
    } else {
        kind
    };
    if !PHOTO_TYPES.contains(&kind.as_str())
        || p.bytes.is_empty()
        || p.bytes.len() > MAX_PHOTO_BYTES
    {
        return None;
    }
    Some(format!(
        "data:{kind};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&p.bytes)
    ))
}

/// Photos already fetched (also who has none), per user id.
#[derive(Debug, Default)]
pub struct PhotoCache(Mutex<HashMap<String, Option<String>>>);

impl PhotoCache {
    /// The photos of `ids`: cached ones at once, the others in JSON batches (64×64).
    pub async fn photos(
        &self,
        graph: &GraphClient,
        ids: &[String],
    ) -> Result<Vec<PersonPhoto>, AccountError> {
        let missing: Vec<String> = {
            let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .filter(|id| !c.contains_key(*id))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            let got = graph.photos(&missing, Some("64x64")).await?;
            let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if c.len() + got.len() > MAX_CACHED_PHOTOS {
                c.clear();
            }
            for (id, p) in got {
                c.insert(id, p.as_ref().and_then(photo_data_url));
            }
        }
        let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(ids
            .iter()
            .map(|id| PersonPhoto {
                id: id.clone(),
                data_url: c.get(id).cloned().flatten(),
            })
            .collect())
    }
}

/// Skills already fetched, per user id.
#[derive(Debug, Default)]
pub struct SkillCache(Mutex<HashMap<String, Vec<String>>>);

impl SkillCache {
    async fn fill(&self, graph: &GraphClient, ids: &[String]) {
        let missing: Vec<String> = {
            let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .filter(|id| !known.contains_key(*id))
                .cloned()
                .collect()
        };
        // Read with User.Read.All (the basic profile has no skills). One that fails is left
        // out (shown without skills) and asked again by the next search.
        let fetched: Vec<(String, Vec<String>)> = stream::iter(missing)
            .map(|id| async move {
                match graph.user_skills(&id).await {
                    Ok(skills) => Some((id, skills)),
                    Err(e) => {
                        tracing::warn!(user = %id, error = %e, "could not read a person's skills");
                        None
                    }
                }
            })
            .buffer_unordered(SKILL_FETCHES)
            .filter_map(std::future::ready)
            .collect()
            .await;
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known.extend(fetched);
    }

    fn get(&self, id: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
}

/// Runs a directory query for `account` (its favourites) through `graph`.
///
/// Skills are read only where the tenant says so (`read_skills`: the app has User.Read.All);
/// elsewhere people come without them, and a search by skill is refused with what to do.
pub async fn search(
    graph: &GraphClient,
    skills: &SkillCache,
    reads_skills: bool,
    favourites: &BTreeSet<String>,
    q: &DirectoryQuery,
) -> Result<Vec<Person>, AccountError> {
    let text = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let department = q
        .department
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let skill = q.skill.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if skill.is_some() && !reads_skills {
        return Err(AccountError::SkillsNotRead);
    }
    let mut query = UserQuery::new().top(100);
    if let Some(t) = text {
        query = query.search(t);
    }
    if let Some(d) = department {
        query = query.department(d);
    }
    let mut users: Vec<User> = graph.users_all(&query, 999).await?;
    if q.favourites_only {
        users.retain(|u| favourites.contains(&u.id));
    }
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    // Skills: for the filter, and to show them (bounded by the result size).
    if reads_skills && (skill.is_some() || ids.len() <= MAX_RESULTS) {
        skills.fill(graph, &ids).await;
    }
    if let Some(s) = skill {
        users.retain(|u| {
            skills
                .get(&u.id)
                .iter()
                .any(|k| k.to_lowercase().contains(&s.to_lowercase()))
        });
    }
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let presences: HashMap<String, PresenceInfo> = if ids.is_empty() {
        HashMap::new()
    } else {
        graph
            .presences(&ids)
            .await?
            .iter()
            .map(|p| (p.id.clone(), PresenceInfo::from(p)))
            .collect()
    };
    let mut people: Vec<Person> = users
        .into_iter()
        .map(|u| Person {
            display_name: u
                .display_name
                .clone()
                .or_else(|| u.user_principal_name.clone())
                .unwrap_or_else(|| u.id.clone()),
            username: u.user_principal_name.clone().or(u.mail.clone()),
            skills: skills.get(&u.id),
            phones: u
                .business_phones
                .iter()
                .chain(u.mobile_phone.iter())
                .filter_map(|n| printable(n, 32))
                .filter(|n| !n.is_empty())
                .collect(),
            favourite: favourites.contains(&u.id),
            presence: presences.get(&u.id).cloned(),
            department: u.department,
            job_title: u.job_title,
            id: u.id,
        })
        .filter(|p| !q.available_only || p.presence.as_ref().is_some_and(|x| x.transferable))
        .collect();
    people.sort_by(|a, b| {
        (
            !a.favourite,
            !a.presence.as_ref().is_some_and(|p| p.transferable),
            &a.display_name,
        )
            .cmp(&(
                !b.favourite,
                !b.presence.as_ref().is_some_and(|p| p.transferable),
                &b.display_name,
            ))
    });
    people.truncate(MAX_RESULTS);
    Ok(people)
}

/// Presence of the people shown (the window refreshes its dots with this).
pub async fn presences(
    graph: &GraphClient,
    ids: &[String],
) -> Result<Vec<PresenceInfo>, AccountError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(graph
        .presences(ids)
        .await?
        .iter()
        .map(PresenceInfo::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_graph::Activity;

    fn p(a: &str, b: &str) -> Presence {
        Presence {
            id: "u".into(),
            availability: Availability::parse(a),
            activity: Activity::parse(b),
            status_message: None,
            out_of_office_settings: None,
        }
    }

    #[test]
    fn unknown_values_show_as_unknown() {
        let x = PresenceInfo::from(&p("Sleepy", "Dreaming"));
        assert_eq!(
            (x.availability.as_str(), x.activity.as_str()),
            ("Unknown", "Unknown")
        );
        assert!(!x.transferable);
        let y = PresenceInfo::from(&p("Busy", "InACall"));
        assert_eq!(
            (y.availability.as_str(), y.activity.as_str()),
            ("Busy", "InACall")
        );
        assert!(y.transferable);
        assert!(!PresenceInfo::from(&p("DoNotDisturb", "Presenting")).transferable);
    }

    #[test]
    fn only_images_of_a_sane_size_become_data_urls() {
        let photo = |t: &str, n: usize| switchboard_graph::Photo {
            content_type: t.into(),
            bytes: vec![0x89; n],
        };
        assert!(photo_data_url(&photo("image/jpeg", 10))
            .unwrap()
            .starts_with("data:image/jpeg;base64,iYmJ"));
        assert!(photo_data_url(&photo("IMAGE/PNG; charset=binary", 10))
            .unwrap()
            .starts_with("data:image/png;base64,"));
        assert!(photo_data_url(&photo("image/pjpeg", 10))
            .unwrap()
            .starts_with("data:image/jpeg;base64,"));
        assert_eq!(photo_data_url(&photo("text/html", 10)), None);
        assert_eq!(photo_data_url(&photo("image/jpeg", 0)), None);
        assert_eq!(
            photo_data_url(&photo("image/jpeg", MAX_PHOTO_BYTES + 1)),
            None
        );
    }

    #[test]
    fn favourites_persist_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("favourites.json");
        let f = Favourites::open(path.clone());
        f.set("a", "u1", true).unwrap();
        f.set("a", "u2", true).unwrap();
        f.set("a", "u1", false).unwrap();
        f.set("b", "u3", true).unwrap();
        let g = Favourites::open(path.clone());
        assert_eq!(g.of("a").into_iter().collect::<Vec<_>>(), vec!["u2"]);
        assert_eq!(g.of("b").len(), 1);
        std::fs::write(&path, "not json").unwrap();
        assert!(Favourites::open(path).of("a").is_empty());
    }
}
