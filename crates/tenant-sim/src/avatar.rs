//! Generated profile photos: an SVG with the user's initials on a colour taken from the id.

use crate::directory::DemoUser;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG avatar (`image/svg+xml`), 240×240 like Graph's default photo size.
pub fn svg(u: &DemoUser) -> String {
    let initials: String = [u.given_name.chars().next(), u.surname.chars().next()]
        .into_iter()
        .flatten()
        .collect::<String>()
        .to_uppercase();
    let hue =
        u.id.bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % 360;
    format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="240" height="240" viewBox="0 0 240 240">"#,
            r#"<title>{name}</title><rect width="240" height="240" fill="hsl({hue},55%,42%)"/>"#,
            r#"<text x="120" y="120" dy="0.35em" text-anchor="middle" font-family="Segoe UI,Helvetica,Arial,sans-serif" "#,
            r##"font-size="96" fill="#fff">{initials}</text></svg>"##
        ),
        name = escape(&u.display_name),
        hue = hue,
        initials = escape(&initials)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::seeded_users;

    #[test]
    fn initials_and_escaping() {
        let users = seeded_users();
        let s = svg(&users[0]);
        assert!(s.starts_with("<svg"));
        assert!(s.contains(">AV</text>"));
        let liam = users.iter().find(|u| u.surname == "O'Brien").unwrap();
        assert!(svg(liam).contains(">LO</text>"));
    }
}
