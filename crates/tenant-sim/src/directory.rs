//! The seeded directory: about fifty demo users with deterministic ids, names, departments,
//! job titles, skills and app roles, plus generated extra users for scale tests.

use serde_json::{json, Map, Value};
use uuid::Uuid;

/// The domain of every demo user's UPN and mail.
pub const DEMO_DOMAIN: &str = "contoso.example";
/// The password of every demo user (documented in the README and on the login page).
pub const DEMO_PASSWORD: &str = "switchboard";

/// Namespace for the deterministic (v5) user ids.
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x5b1d_c0de_0000_4000_8000_0000_0000_0006);

/// App roles of the router's API (`roles` claim).
pub const ROLE_AGENT: &str = "Agent";
/// Supervisor role.
pub const ROLE_SUPERVISOR: &str = "Supervisor";
/// Administrator role.
pub const ROLE_ADMIN: &str = "Admin";

/// One user of the simulated tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoUser {
    /// Object id (deterministic from the UPN).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Given name.
    pub given_name: String,
    /// Surname.
    pub surname: String,
    /// UPN and sign-in name.
    pub user_principal_name: String,
    /// Mail.
    pub mail: String,
    /// Job title.
    pub job_title: String,
    /// Department.
    pub department: String,
    /// Office location.
    pub office_location: String,
    /// Business phone (E.164).
    pub business_phone: String,
    /// Skills (Graph's `skills` property, returned for a single user with `$select`).
    pub skills: Vec<String>,
    /// App roles for the router's API.
    pub roles: Vec<String>,
    /// Whether the user has a profile photo (others answer 404 ImageNotFound, like Graph).
    pub has_photo: bool,
    /// Presence the seeded Teams client shows at start (`None`: signed out).
    pub seed_presence: Option<(&'static str, &'static str)>,
}

struct Seed {
    given: &'static str,
    surname: &'static str,
    department: &'static str,
    title: &'static str,
    skills: &'static [&'static str],
}

const SEEDS: &[Seed] = &[
    Seed {
        given: "Adele",
        surname: "Vance",
        department: "Customer Service",
        title: "Contact Center Agent",
        skills: &["billing", "english", "french"],
    },
    Seed {
        given: "Alex",
        surname: "Wilber",
        department: "Customer Service",
        title: "Contact Center Agent",
        skills: &["orders", "english"],
    },
    Seed {
        given: "Megan",
        surname: "Bowen",
        department: "Customer Service",
        title: "Contact Center Supervisor",
        skills: &["escalations", "english", "spanish"],
    },
    Seed {
        given: "Nestor",
        surname: "Wilke",
        department: "IT",
        title: "Contact Center Administrator",
        skills: &["telephony", "networking"],
    },
    Seed {
        given: "Lynne",
        surname: "Robbins",
        department: "Customer Service",
        title: "Contact Center Agent",
        skills: &["billing", "german"],
    },
    Seed {
        given: "Diego",
        surname: "Siciliani",
        department: "Customer Service",
        title: "Contact Center Agent",
        skills: &["orders", "spanish", "italian"],
    },
    Seed {
        given: "Grady",
        surname: "Archie",
        department: "Sales",
        title: "Account Executive",
        skills: &["enterprise", "pricing"],
    },
    Seed {
        given: "Isaiah",
        surname: "Langer",
        department: "Sales",
        title: "Sales Representative",
        skills: &["smb", "pricing", "spanish"],
    },
    Seed {
        given: "Joni",
        surname: "Sherman",
        department: "Legal",
        title: "Paralegal",
        skills: &["contracts", "privacy"],
    },
    Seed {
        given: "Johanna",
        surname: "Lorenz",
        department: "Engineering",
        title: "Software Engineer",
        skills: &["api", "integrations"],
    },
    Seed {
        given: "Lee",
        surname: "Gu",
        department: "Engineering",
        title: "Site Reliability Engineer",
        skills: &["outages", "networking"],
    },
    Seed {
        given: "Lidia",
        surname: "Holloway",
        department: "Product",
        title: "Product Manager",
        skills: &["roadmap", "feature requests"],
    },
    Seed {
        given: "Miriam",
        surname: "Graham",
        department: "Marketing",
        title: "Marketing Director",
        skills: &["campaigns", "press"],
    },
    Seed {
        given: "Patti",
        surname: "Fernandez",
        department: "Finance",
        title: "Controller",
        skills: &["refunds", "invoices"],
    },
    Seed {
        given: "Pradeep",
        surname: "Gupta",
        department: "Finance",
        title: "Accountant",
        skills: &["invoices", "tax", "hindi"],
    },
    Seed {
        given: "Henrietta",
        surname: "Mueller",
        department: "Human Resources",
        title: "HR Manager",
        skills: &["benefits", "german"],
    },
    Seed {
        given: "Oscar",
        surname: "Ward",
        department: "Technical Support",
        title: "Support Engineer",
        skills: &["hardware", "networking"],
    },
    Seed {
        given: "Christie",
        surname: "Cline",
        department: "Technical Support",
        title: "Support Engineer",
        skills: &["software", "api"],
    },
    Seed {
        given: "Enrico",
        surname: "Cattaneo",
        department: "Technical Support",
        title: "Senior Support Engineer",
        skills: &["software", "italian"],
    },
    Seed {
        given: "Irvin",
        surname: "Sayers",
        department: "Technical Support",
        title: "Support Engineer",
        skills: &["hardware", "french"],
    },
    Seed {
        given: "Allan",
        surname: "Deyoung",
        department: "Billing",
        title: "Billing Specialist",
        skills: &["refunds", "billing"],
    },
    Seed {
        given: "Debra",
        surname: "Berger",
        department: "Billing",
        title: "Billing Specialist",
        skills: &["invoices", "billing", "spanish"],
    },
    Seed {
        given: "Emily",
        surname: "Braun",
        department: "Billing",
        title: "Billing Team Lead",
        skills: &["billing", "escalations"],
    },
    Seed {
        given: "Ben",
        surname: "Walters",
        department: "Sales",
        title: "Sales Engineer",
        skills: &["enterprise", "api"],
    },
    Seed {
        given: "Cameron",
        surname: "White",
        department: "Sales",
        title: "Inside Sales",
        skills: &["smb", "renewals"],
    },
    Seed {
        given: "Carlos",
        surname: "Slattery",
        department: "Operations",
        title: "Logistics Coordinator",
        skills: &["shipping", "orders", "spanish"],
    },
    Seed {
        given: "Dana",
        surname: "Birkby",
        department: "Operations",
        title: "Warehouse Manager",
        skills: &["shipping", "returns"],
    },
    Seed {
        given: "Gerhart",
        surname: "Moller",
        department: "Engineering",
        title: "Network Engineer",
        skills: &["networking", "telephony", "german"],
    },
    Seed {
        given: "Hannah",
        surname: "Kim",
        department: "Customer Service",
        title: "Contact Center Agent",
        skills: &["orders", "korean"],
    },
    Seed {
        given: "Ingrid",
        surname: "Larsen",
        department: "Customer Service",
        title: "Contact Center Agent",
        skills: &["returns", "norwegian"],
    },
    Seed {
        given: "Jamal",
        surname: "Okafor",
        department: "Technical Support",
        title: "Support Engineer",
        skills: &["software", "outages"],
    },
    Seed {
        given: "Keiko",
        surname: "Tanaka",
        department: "Product",
        title: "UX Researcher",
        skills: &["feature requests", "japanese"],
    },
    Seed {
        given: "Liam",
        surname: "O'Brien",
        department: "Legal",
        title: "Counsel",
        skills: &["contracts", "compliance"],
    },
    Seed {
        given: "Maria",
        surname: "Garcia",
        department: "Billing",
        title: "Collections Specialist",
        skills: &["billing", "spanish"],
    },
    Seed {
        given: "Noah",
        surname: "Schmidt",
        department: "Engineering",
        title: "Engineering Manager",
        skills: &["integrations", "outages"],
    },
    Seed {
        given: "Olivia",
        surname: "Rossi",
        department: "Marketing",
        title: "Community Manager",
        skills: &["social", "italian"],
    },
    Seed {
        given: "Priya",
        surname: "Raman",
        department: "Technical Support",
        title: "Support Team Lead",
        skills: &["escalations", "software", "tamil"],
    },
    Seed {
        given: "Quentin",
        surname: "Dubois",
        department: "Sales",
        title: "Account Manager",
        skills: &["renewals", "french"],
    },
    Seed {
        given: "Rosa",
        surname: "Alvarez",
        department: "Customer Service",
        title: "Contact Center Agent",
        skills: &["billing", "spanish"],
    },
    Seed {
        given: "Samir",
        surname: "Haddad",
        department: "Finance",
        title: "Financial Analyst",
        skills: &["refunds", "arabic"],
    },
    Seed {
        given: "Tomas",
        surname: "Novak",
        department: "Operations",
        title: "Field Technician",
        skills: &["hardware", "czech"],
    },
    Seed {
        given: "Uma",
        surname: "Patel",
        department: "Human Resources",
        title: "Recruiter",
        skills: &["hiring", "gujarati"],
    },
    Seed {
        given: "Victor",
        surname: "Lindqvist",
        department: "IT",
        title: "Systems Administrator",
        skills: &["identity", "telephony", "swedish"],
    },
    Seed {
        given: "Wen",
        surname: "Zhao",
        department: "Engineering",
        title: "Software Engineer",
        skills: &["api", "mandarin"],
    },
    Seed {
        given: "Xavier",
        surname: "Moreau",
        department: "Legal",
        title: "Compliance Officer",
        skills: &["compliance", "privacy", "french"],
    },
    Seed {
        given: "Yara",
        surname: "Costa",
        department: "Customer Service",
        title: "Contact Center Agent",
        skills: &["orders", "portuguese"],
    },
    Seed {
        given: "Zoe",
        surname: "Anderson",
        department: "Customer Service",
        title: "Quality Analyst",
        skills: &["quality", "english"],
    },
    Seed {
        given: "Aaron",
        surname: "Fisher",
        department: "Technical Support",
        title: "Support Engineer",
        skills: &["hardware", "software"],
    },
    Seed {
        given: "Bianca",
        surname: "Weber",
        department: "Sales",
        title: "Sales Director",
        skills: &["enterprise", "german"],
    },
    Seed {
        given: "Chen",
        surname: "Li",
        department: "Billing",
        title: "Billing Specialist",
        skills: &["invoices", "mandarin"],
    },
];

/// Presence the seeded Teams clients show, cycled over the users so the directory is varied.
const SEED_PRESENCE: &[Option<(&str, &str)>] = &[
    Some(("Available", "Available")),
    Some(("Busy", "InACall")),
    Some(("Available", "Available")),
    Some(("Busy", "InAMeeting")),
    Some(("DoNotDisturb", "Presenting")),
    Some(("Away", "Away")),
    Some(("Available", "Available")),
    Some(("BeRightBack", "BeRightBack")),
    None,
    Some(("Busy", "Busy")),
    Some(("Available", "Available")),
    Some(("Away", "OffWork")),
];

/// Makes the deterministic object id for a UPN.
pub fn user_id_for(upn: &str) -> String {
    Uuid::new_v5(&USER_NAMESPACE, upn.to_ascii_lowercase().as_bytes()).to_string()
}

fn upn_for(given: &str, surname: &str) -> String {
    let clean: String = surname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!(
        "{given}{}@{DEMO_DOMAIN}",
        clean.chars().next().unwrap_or('x')
    )
}

/// The seeded demo users, always the same.
pub fn seeded_users() -> Vec<DemoUser> {
    SEEDS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let upn = upn_for(s.given, s.surname);
            let roles = match (s.department, s.title) {
                (_, t) if t.contains("Administrator") => vec![
                    ROLE_ADMIN.to_string(),
                    ROLE_SUPERVISOR.to_string(),
                    ROLE_AGENT.to_string(),
                ],
                (_, t) if t.contains("Supervisor") || t.contains("Team Lead") => {
                    vec![ROLE_SUPERVISOR.to_string(), ROLE_AGENT.to_string()]
                }
                ("Customer Service", _) | ("Billing", _) | ("Technical Support", _) => {
                    vec![ROLE_AGENT.to_string()]
                }
                _ => Vec::new(),
            };
            DemoUser {
                id: user_id_for(&upn),
                display_name: format!("{} {}", s.given, s.surname),
                given_name: s.given.to_string(),
                surname: s.surname.to_string(),
                mail: upn.clone(),
                user_principal_name: upn,
                job_title: s.title.to_string(),
                department: s.department.to_string(),
                office_location: ["Redmond", "Dublin", "Singapore", "Remote"][i % 4].to_string(),
                business_phone: format!("+1425555{:04}", 100 + i),
                skills: s.skills.iter().map(|x| x.to_string()).collect(),
                roles,
                has_photo: i % 5 != 4,
                seed_presence: SEED_PRESENCE[i % SEED_PRESENCE.len()],
            }
        })
        .collect()
}

/// Extra users for scale tests (`--extra-users N`, `POST /_sim/users`): `Load Test User 00001`
/// and on, department `Load Test`, Available in Teams.
pub fn generated_users(start: usize, count: usize) -> Vec<DemoUser> {
    (start..start + count)
        .map(|n| {
            let upn = format!("loadtest{n:05}@{DEMO_DOMAIN}");
            DemoUser {
                id: user_id_for(&upn),
                display_name: format!("Load Test User {n:05}"),
                given_name: "Load".into(),
                surname: format!("User {n:05}"),
                mail: upn.clone(),
                user_principal_name: upn,
                job_title: "Test User".into(),
                department: "Load Test".into(),
                office_location: "Remote".into(),
                business_phone: format!("+1425600{:04}", n % 10_000),
                skills: vec!["load".into()],
                roles: vec![ROLE_AGENT.to_string()],
                has_photo: false,
                seed_presence: Some(("Available", "Available")),
            }
        })
        .collect()
}

/// Properties Graph returns for a user when no `$select` is given.
pub const DEFAULT_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

/// Properties this directory knows (for `$select`).
pub const KNOWN_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "department",
    "skills",
    "accountEnabled",
];

impl DemoUser {
    /// A string property by its Graph name (for `$filter`, `$search`, `$orderby`).
    pub fn string_property(&self, name: &str) -> Option<&str> {
        Some(match name {
            "id" => &self.id,
            "displayName" => &self.display_name,
            "givenName" => &self.given_name,
            "surname" => &self.surname,
            "mail" => &self.mail,
            "userPrincipalName" => &self.user_principal_name,
            "jobTitle" => &self.job_title,
            "department" => &self.department,
            "officeLocation" => &self.office_location,
            _ => return None,
        })
    }

    /// The user as Graph JSON with the given properties.
    pub fn to_json(&self, properties: &[&str]) -> Map<String, Value> {
        let mut m = Map::new();
        for p in properties {
            let v = match *p {
                "businessPhones" => json!([self.business_phone]),
                "preferredLanguage" => json!("en-US"),
                "mobilePhone" => Value::Null,
                "skills" => json!(self.skills),
                "accountEnabled" => json!(true),
                other => match self.string_property(other) {
                    Some(s) => json!(s),
                    None => continue,
                },
            };
            m.insert((*p).to_string(), v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn seed_is_deterministic_and_unique() {
        let a = seeded_users();
        let b = seeded_users();
        assert_eq!(a, b);
        assert_eq!(a.len(), 50);
        let ids: HashSet<_> = a.iter().map(|u| u.id.clone()).collect();
        let upns: HashSet<_> = a.iter().map(|u| u.user_principal_name.clone()).collect();
        assert_eq!(ids.len(), 50);
        assert_eq!(upns.len(), 50);
        assert_eq!(a[0].user_principal_name, "AdeleV@contoso.example");
        assert!(a.iter().any(|u| u.roles.iter().any(|r| r == ROLE_ADMIN)));
        assert!(a.iter().any(|u| u.seed_presence.is_none()));
        assert!(a.iter().any(|u| !u.has_photo));
    }

    #[test]
    fn generated_users_do_not_collide_with_seed() {
        let seed: HashSet<_> = seeded_users().into_iter().map(|u| u.id).collect();
        let extra = generated_users(1, 700);
        assert_eq!(extra.len(), 700);
        assert!(extra.iter().all(|u| !seed.contains(&u.id)));
    }

    #[test]
    fn default_json_has_graph_properties() {
        let u = &seeded_users()[0];
        let j = u.to_json(DEFAULT_PROPERTIES);
        assert_eq!(j["displayName"], "Adele Vance");
        assert_eq!(j["preferredLanguage"], "en-US");
        assert!(j["mobilePhone"].is_null());
        assert!(!j.contains_key("department"));
    }
}

/// The directory with lookups by id and by UPN.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: Vec<DemoUser>,
    by_id: std::collections::HashMap<String, usize>,
    by_upn: std::collections::HashMap<String, usize>,
    generated: usize,
}

impl Directory {
    /// The seeded users plus `extra` generated ones.
    pub fn new(extra: usize) -> Self {
        let mut d = Self::default();
        for u in seeded_users() {
            d.push(u);
        }
        d.add_generated(extra);
        d
    }

    fn push(&mut self, u: DemoUser) {
        let i = self.users.len();
        self.by_id.insert(u.id.clone(), i);
        self.by_upn
            .insert(u.user_principal_name.to_ascii_lowercase(), i);
        self.users.push(u);
    }

    /// Adds `count` generated users; returns them.
    pub fn add_generated(&mut self, count: usize) -> Vec<DemoUser> {
        let new = generated_users(self.generated + 1, count);
        self.generated += count;
        for u in &new {
            self.push(u.clone());
        }
        new
    }

    /// All users in seed order.
    pub fn all(&self) -> &[DemoUser] {
        &self.users
    }

    /// By object id or UPN (case-insensitive), as Graph's `/users/{id | userPrincipalName}`.
    pub fn find(&self, id_or_upn: &str) -> Option<&DemoUser> {
        let i = self
            .by_id
            .get(id_or_upn)
            .or_else(|| self.by_upn.get(&id_or_upn.to_ascii_lowercase()))?;
        self.users.get(*i)
    }
}
